"""What one `response.create` asks for: the session's settings overridden by its parameters,
and the LLM request built from them when the response may generate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..backends.llm.base import FunctionSpec
from ..protocol import client_events as ce
from ..protocol import errors
from ..protocol.errors import ProtocolError
from ..protocol.items import ItemReference
from ..protocol.session import RealtimeSession, ToolChoiceFunction, ToolChoiceMcp, VoiceId
from .context import build_request, estimate_input
from .conversation import Conversation
from .effects import GenerateResponse
from .images import check_item_images
from .mcp import MAX_TOOL_ROUNDS, McpServers, McpTarget
from .responses import Response, ResponseSettings


def in_default_conversation(params: ce.ResponseParams) -> bool:
    """`conversation: "auto"` (the default) or `"none"` (out of band)."""
    conversation = params.conversation or "auto"
    if conversation not in ("auto", "none"):
        raise ProtocolError(
            f"Invalid value: '{conversation}'. Supported values are: 'auto' and 'none'.",
            errors.INVALID_VALUE,
            "response.conversation",
        )
    return conversation == "auto"


def response_settings(
    config: RealtimeSession,
    params: ce.ResponseParams,
    *,
    in_conversation: bool,
    check_voice: Callable[[Any, str], None],
) -> ResponseSettings:
    audio_out = params.audio.output if params.audio and params.audio.output else None
    if audio_out and audio_out.voice is not None:
        check_voice(audio_out.voice, "response.audio.output.voice")
    voice = (
        audio_out.voice if audio_out and audio_out.voice else None
    ) or config.audio.output.voice
    audio_format = (
        audio_out.format if audio_out and audio_out.format else None
    ) or config.audio.output.format
    return ResponseSettings(
        output_modalities=list(params.output_modalities or config.output_modalities),
        voice=voice.id if isinstance(voice, VoiceId) else voice,
        audio_format=audio_format.model_dump(),
        max_output_tokens=params.max_output_tokens or config.max_output_tokens,
        metadata=params.metadata,
        conversation=in_conversation,
    )


def resolve_input(conversation: Conversation, entries: list[Any]) -> list[Any]:
    """`response.input`, with item references replaced by the items; inline items are checked
    as a created item would be (their images)."""
    resolved = []
    for index, entry in enumerate(entries):
        param = f"response.input[{index}]"
        if isinstance(entry, ItemReference):
            resolved.append(conversation.get(entry.id, param="response.input"))
        else:
            check_item_images(entry, param, vision=conversation.vision)
            resolved.append(entry)
    return resolved


def _reasoning_effort(params: ce.ResponseParams, config: RealtimeSession) -> str | None:
    reasoning = params.reasoning if params.reasoning is not None else config.reasoning
    return reasoning.effort if reasoning is not None else None


def mcp_choice(
    choice: ToolChoiceMcp, functions: tuple[FunctionSpec, ...], targets: dict[str, McpTarget]
) -> tuple[tuple[FunctionSpec, ...], Any]:
    """`tool_choice: {"type": "mcp", ...}` as the functions the LLM sees and the choice it gets:
    the LLM must call that server's tool (`name`), or one of that server's tools. A tool that
    is not listed (yet), or not allowed, leaves the LLM no tools to call."""
    names = {
        name
        for name, target in targets.items()
        if target.server.label == choice.server_label
        and (choice.name is None or target.tool == choice.name)
    }
    kept = tuple(spec for spec in functions if spec.name in names)
    if choice.name is None or not kept:
        return kept, "required"
    return kept, ToolChoiceFunction(type="function", name=kept[0].name)


def generation(
    response: Response,
    config: RealtimeSession,
    params: ce.ResponseParams,
    *,
    conversation: Conversation,
    inputs: list[Any] | None,
    context_window: int | None,
    mcp: McpServers | None = None,
) -> Callable[[], GenerateResponse]:
    """What asks for the response's generation. Called when generation starts, so that the
    request sees the transcripts it waited for; `inputs` None means the whole conversation.
    Called again after MCP calls: the request then holds the response's own items too."""
    speed = config.audio.output.speed

    def generate() -> GenerateResponse:
        items = conversation.items() if inputs is None else list(inputs)
        if response.rounds and not (inputs is None and response.settings.conversation):
            seen = {getattr(item, "id", None) for item in items}
            items += [
                item
                for item in [*response.output, *response.approval_answers]
                if item.id not in seen
            ]
        tools = config.tools if params.tools is None else params.tools
        mcp_functions: tuple[FunctionSpec, ...] = ()
        if mcp is not None and response.rounds < MAX_TOOL_ROUNDS:
            mcp_functions, response.mcp_targets = mcp.offered(tools)
        else:
            response.mcp_targets = {}
        choice = params.tool_choice or config.tool_choice
        offered_tools: list[Any] = tools
        if response.rounds and choice != "none":
            choice = "auto"  # the call it asked for was made; the answer goes on freely
        elif isinstance(choice, ToolChoiceMcp):
            mcp_functions, choice = mcp_choice(choice, mcp_functions, response.mcp_targets)
            offered_tools = []  # only that server's tools
        request = build_request(
            instructions=config.instructions
            if params.instructions is None
            else params.instructions,
            items=items,
            tools=offered_tools,
            extra_functions=mcp_functions,
            tool_choice=choice,
            temperature=params.temperature
            if params.temperature is not None
            else config.temperature,
            max_output_tokens=response.settings.max_output_tokens,
            parallel_tool_calls=params.parallel_tool_calls
            if params.parallel_tool_calls is not None
            else config.parallel_tool_calls,
            reasoning_effort=_reasoning_effort(params, config),
            truncation=config.truncation,
            context_window=context_window,
        )
        response.set_input_estimate(estimate_input(request, conversation.input_audio_ms(items)))
        voice = response.settings.voice if response.speaks else None
        return GenerateResponse(response.id, request, voice=voice, speed=speed)

    return generate
