"""The base of every wire model: unknown fields are refused, as OpenAI refuses them.

Validators are built on first use, not at import (`defer_build`): building them all costs
~0.1 s of CPU, which `openrealtime serve` would pay before it answers (issue 9). The server
builds them in the background once it listens (`build_validators`), so the first session
does not pay either."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter

_DEFERRED = ConfigDict(defer_build=True)
_adapters: list[TypeAdapter[Any]] = []


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


def deferred_adapter(annotation: Any) -> TypeAdapter[Any]:
    """A TypeAdapter whose validator is built on first use or by `build_validators`."""
    adapter: TypeAdapter[Any] = TypeAdapter(annotation, config=_DEFERRED)
    _adapters.append(adapter)
    return adapter


def build_validators() -> int:
    """Build every wire model's and adapter's validator not built yet (the models of the
    modules imported so far); returns how many were built."""
    built = 0
    todo: list[type[BaseModel]] = [WireModel]
    while todo:
        model = todo.pop()
        todo += model.__subclasses__()
        if not model.__pydantic_complete__:
            model.model_rebuild()
            built += 1
    for adapter in _adapters:
        if not adapter.pydantic_complete:
            adapter.rebuild()
            built += 1
    return built
