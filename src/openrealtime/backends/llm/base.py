"""The language model interface: a snapshot of the conversation in, a stream of events out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..base import Capabilities


@dataclass(frozen=True, slots=True)
class ImageInput:
    url: str  # a data URL, checked by the core
    detail: Literal["auto", "low", "high"] | None = None


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: Literal["system", "user", "assistant"]
    text: str
    images: tuple[ImageInput, ...] = ()  # user turns only; sent after the text


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    output: str


ContextEntry = ChatTurn | ToolCall | ToolResult


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class LlmRequest:
    """Everything one response needs, copied out of the session so later edits can't race it."""

    instructions: str
    context: tuple[ContextEntry, ...]
    tools: tuple[FunctionSpec, ...] = ()
    # "auto" | "none" | "required", or the name of the one function the model must call.
    tool_choice: str = "auto"
    forced_function: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    parallel_tool_calls: bool | None = None
    # "minimal" ... "xhigh": for reasoning models; None: the endpoint's default.
    reasoning_effort: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of the `index`-th tool call; `call_id` and `name` come with its first piece."""

    index: int
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    image_tokens: int | None = None  # of input_tokens; None: the backend did not say


@dataclass(frozen=True, slots=True)
class Finished:
    # "stop", "length" (max tokens reached), "tool_calls", ...
    finish_reason: str = "stop"
    usage: Usage | None = None
    extra: dict[str, Any] = field(default_factory=dict)


LlmEvent = TextDelta | ToolCallDelta | Finished


class LanguageModel(Protocol):
    """Text (and tool calls) from a conversation; one instance is shared by every session."""

    name: str
    model: str
    context_window: int | None  # tokens; None: never truncate

    @property
    def capabilities(self) -> Capabilities: ...

    def stream(self, request: LlmRequest) -> AsyncIterator[LlmEvent]:
        """Stream one response; ends with exactly one Finished. Raises BackendError."""
        ...

    async def check(self) -> str | None:
        """None if the model can be reached; otherwise why not (a start-up warning)."""
        ...

    async def aclose(self) -> None: ...
