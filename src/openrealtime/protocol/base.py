"""The base of every wire model: unknown fields are refused, as OpenAI refuses them."""

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
