"""Conversation items and their content parts (GA shapes)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .base import WireModel

ItemStatus = Literal["completed", "incomplete", "in_progress"]


class ContentPart(WireModel):
    """One content part. Which types a role may carry is checked on the message."""

    type: Literal["input_text", "input_audio", "input_image", "output_text", "output_audio", "text"]
    text: str | None = None
    audio: str | None = None
    transcript: str | None = None
    image_url: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


_ROLE_CONTENT = {
    "user": ("input_text", "input_audio", "input_image"),
    "assistant": ("output_text", "output_audio"),
    "system": ("input_text",),
}
# `text` is the beta name of assistant text, and some clients send it for every role.
_TEXT_ALIAS = {"user": "input_text", "system": "input_text", "assistant": "output_text"}


class MessageItem(WireModel):
    type: Literal["message"] = "message"
    id: str | None = None
    object: Literal["realtime.item"] | None = None
    status: ItemStatus | None = None
    role: Literal["user", "assistant", "system"]
    content: list[ContentPart]

    @model_validator(mode="after")
    def _content_fits_role(self) -> MessageItem:
        allowed = _ROLE_CONTENT[self.role]
        article = "an" if self.role == "assistant" else "a"
        for index, part in enumerate(self.content):
            if part.type == "text":
                part.type = _TEXT_ALIAS[self.role]  # type: ignore[assignment]
            if part.type not in allowed:
                raise PydanticCustomError(
                    "content_invalid",
                    "content type '{got}' is not allowed in {article} {role} message; use one "
                    "of: {allowed}.",
                    {
                        "at": f"content[{index}].type",
                        "got": part.type,
                        "article": article,
                        "role": self.role,
                        "allowed": ", ".join(allowed),
                    },
                )
            if part.type in ("input_text", "output_text") and part.text is None:
                raise PydanticCustomError(
                    "content_missing",
                    "a content part of type {t} needs 'text'.",
                    {"at": f"content[{index}].text", "t": part.type},
                )
        return self


class FunctionCallItem(WireModel):
    type: Literal["function_call"] = "function_call"
    id: str | None = None
    object: Literal["realtime.item"] | None = None
    status: ItemStatus | None = None
    call_id: str | None = None
    name: str
    arguments: str


class FunctionCallOutputItem(WireModel):
    type: Literal["function_call_output"] = "function_call_output"
    id: str | None = None
    object: Literal["realtime.item"] | None = None
    status: ItemStatus | None = None
    call_id: str
    output: str


class McpApprovalResponseItem(WireModel):
    """The client's answer to an `mcp_approval_request` (core/lifecycle.py)."""

    type: Literal["mcp_approval_response"] = "mcp_approval_response"
    id: str | None = None
    approval_request_id: str
    approve: bool
    reason: str | None = None


ConversationItem = Annotated[
    MessageItem | FunctionCallItem | FunctionCallOutputItem | McpApprovalResponseItem,
    Field(discriminator="type"),
]


class ItemReference(WireModel):
    type: Literal["item_reference"] = "item_reference"
    id: str


ItemOrReference = Annotated[
    MessageItem
    | FunctionCallItem
    | FunctionCallOutputItem
    | McpApprovalResponseItem
    | ItemReference,
    Field(discriminator="type"),
]

# The shapes clients most often get wrong, with the right one spelled out.
ITEM_SHAPE_HINTS = {
    "user": 'A user message is {"type": "message", "role": "user", "content": '
    '[{"type": "input_text", "text": "..."}]}.',
    "assistant": 'An assistant message is {"type": "message", "role": "assistant", "content": '
    '[{"type": "output_text", "text": "..."}]}.',
    "system": 'A system message is {"type": "message", "role": "system", "content": '
    '[{"type": "input_text", "text": "..."}]}.',
    "function_result": 'A tool result is {"type": "function_call_output", "call_id": "<the '
    'call_id of the function_call item>", "output": "<the result as a string>"}.',
    "function_call_result": 'A tool result is {"type": "function_call_output", "call_id": '
    '"<call_id>", "output": "<result>"}.',
    "tool_result": 'A tool result is {"type": "function_call_output", "call_id": "<call_id>", '
    '"output": "<result>"}.',
}


def item_text(item: MessageItem) -> str:
    """The text a message carries: typed text, or audio transcripts."""
    return "".join(part.text or part.transcript or "" for part in item.content)


def dump_item(item: Any) -> dict[str, Any]:
    return item.model_dump(exclude_none=True)
