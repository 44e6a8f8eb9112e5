"""The session configuration in its GA shape, with OpenAI's defaults and limits.

Every field OpenAI accepts is accepted, stored and echoed back. docs/protocol.md says which of
them openrealtime acts on. `temperature` is an openrealtime extension to the GA shape (the beta
dialect has it), passed on to the LLM.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from .base import WireModel

# --- audio ---------------------------------------------------------------------------------


class AudioPCM(WireModel):
    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[24000] = 24000


class AudioPCMU(WireModel):
    type: Literal["audio/pcmu"] = "audio/pcmu"


class AudioPCMA(WireModel):
    type: Literal["audio/pcma"] = "audio/pcma"


AudioFormatConfig = Annotated[AudioPCM | AudioPCMU | AudioPCMA, Field(discriminator="type")]


class NoiseReduction(WireModel):
    type: Literal["near_field", "far_field"] | None = None
    strength: float | None = None


class TranscriptionConfig(WireModel):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    languages: list[str] | None = None
    keywords: list[str] | None = None
    delay: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None


class ServerVad(WireModel):
    type: Literal["server_vad"] = "server_vad"
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(300, ge=0)
    silence_duration_ms: int = Field(500, ge=0)
    idle_timeout_ms: int | None = Field(None, ge=5000, le=30000)
    create_response: bool = True
    interrupt_response: bool = True


class SemanticVad(WireModel):
    type: Literal["semantic_vad"] = "semantic_vad"
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    create_response: bool = True
    interrupt_response: bool = True


TurnDetection = Annotated[ServerVad | SemanticVad, Field(discriminator="type")]


class AudioInput(WireModel):
    format: AudioFormatConfig = Field(default_factory=AudioPCM)
    noise_reduction: NoiseReduction | None = None
    transcription: TranscriptionConfig | None = None
    turn_detection: TurnDetection | None = Field(default_factory=ServerVad)


# OpenAI's built-in voice names; each speech backend maps them onto voices of its own.
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)


class VoiceId(WireModel):
    id: str


class AudioOutput(WireModel):
    format: AudioFormatConfig = Field(default_factory=AudioPCM)
    voice: str | VoiceId = "alloy"
    speed: float = Field(1.0, ge=0.25, le=1.5)


class SessionAudio(WireModel):
    input: AudioInput = Field(default_factory=AudioInput)
    output: AudioOutput = Field(default_factory=AudioOutput)


# --- tools ---------------------------------------------------------------------------------


class FunctionTool(WireModel):
    type: Literal["function"] = "function"
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class McpTool(WireModel):
    """An MCP server whose tools the LLM may call; openrealtime is the client (core/mcp.py)."""

    type: Literal["mcp"]
    server_label: str
    server_url: str | None = None
    connector_id: str | None = None
    server_description: str | None = None
    allowed_tools: list[str] | dict[str, Any] | None = None
    authorization: str | None = None
    headers: dict[str, str] | None = None
    require_approval: str | dict[str, Any] | None = None
    allowed_callers: list[Literal["direct", "programmatic"]] | None = None
    defer_loading: bool | None = None
    tunnel_id: str | None = None


def _tool_kind(value: Any) -> str | None:
    # OpenAI lets a function tool omit its `type`. Anything but an object has no kind.
    if isinstance(value, dict):
        return str(value.get("type", "function"))
    return getattr(value, "type", None)


Tool = Annotated[
    Annotated[FunctionTool, Tag("function")] | Annotated[McpTool, Tag("mcp")],
    Discriminator(_tool_kind, custom_error_type="dict_type"),
]


class ToolChoiceFunction(WireModel):
    type: Literal["function"]
    name: str


class ToolChoiceMcp(WireModel):
    type: Literal["mcp"]
    server_label: str
    name: str | None = None


ToolChoice = (
    Literal["none", "auto", "required"]
    | Annotated[ToolChoiceFunction | ToolChoiceMcp, Field(discriminator="type")]
)

# --- everything else -----------------------------------------------------------------------


class TracingConfiguration(WireModel):
    group_id: str | None = None
    metadata: dict[str, Any] | None = None
    workflow_name: str | None = None


class TokenLimits(WireModel):
    post_instructions: int | None = Field(None, ge=0)


class RetentionRatioTruncation(WireModel):
    type: Literal["retention_ratio"]
    retention_ratio: float = Field(ge=0.0, le=1.0)
    token_limits: TokenLimits | None = None


Truncation = Literal["auto", "disabled"] | RetentionRatioTruncation


class Prompt(WireModel):
    id: str
    variables: dict[str, Any] | None = None
    version: str | None = None


class Reasoning(WireModel):
    effort: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None


MaxOutputTokens = Annotated[int, Field(ge=1, le=4096)] | Literal["inf"]
Modality = Literal["text", "audio"]
OutputModalities = Annotated[list[Modality], Field(min_length=1, max_length=1)]

DEFAULT_INSTRUCTIONS = (
    "You are a helpful, witty and friendly AI. Act like a human, but remember that you "
    "aren't a human. Keep your answers short and to the point."
)


class RealtimeSession(WireModel):
    """The `session` object of `session.created` / `session.updated` and of `session.update`."""

    type: Literal["realtime"] = "realtime"
    # Read-only fields a client may echo back; accepted and ignored on update.
    object: Literal["realtime.session"] = "realtime.session"
    id: str | None = None
    expires_at: int | None = None
    model: str = "gpt-realtime"
    output_modalities: OutputModalities = Field(default_factory=lambda: ["audio"])  # type: ignore[arg-type]
    instructions: str = DEFAULT_INSTRUCTIONS
    audio: SessionAudio = Field(default_factory=SessionAudio)
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = None
    tools: list[Tool] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_output_tokens: MaxOutputTokens = "inf"
    tracing: Literal["auto"] | TracingConfiguration | None = None
    truncation: Truncation = "auto"
    prompt: Prompt | None = None
    reasoning: Reasoning | None = None


class TranscriptionSessionAudioInput(WireModel):
    format: AudioFormatConfig = Field(default_factory=AudioPCM)
    noise_reduction: NoiseReduction | None = None
    transcription: TranscriptionConfig | None = None
    turn_detection: TurnDetection | None = Field(default_factory=ServerVad)


class TranscriptionSessionAudio(WireModel):
    input: TranscriptionSessionAudioInput = Field(default_factory=TranscriptionSessionAudioInput)


class TranscriptionSession(WireModel):
    """A session that only transcribes (`type: "transcription"`)."""

    type: Literal["transcription"] = "transcription"
    object: Literal["realtime.transcription_session"] = "realtime.transcription_session"
    id: str | None = None
    expires_at: int | None = None
    audio: TranscriptionSessionAudio = Field(default_factory=TranscriptionSessionAudio)
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = None


AnySession = Annotated[RealtimeSession | TranscriptionSession, Field(discriminator="type")]

READ_ONLY_FIELDS = frozenset({"object", "id", "expires_at"})
# Objects that name one thing (a tool, a prompt): a new one replaces the old whole.
_REPLACED_WHOLE = frozenset({"tool_choice", "prompt"})
# Objects whose `type` is an ordinary setting, not the tag of a variant: always merged.
_ALWAYS_MERGED = frozenset({"noise_reduction"})


def merge_session_update(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge an update's explicitly set fields into the current session.

    Objects merge field by field; everything else (lists, strings, null) replaces. An object
    whose `type` changes (server_vad → semantic_vad, audio/pcm → audio/pcmu) replaces whole,
    so no field of the old variant leaks into the new one.
    """
    merged = dict(current)
    for key, value in update.items():
        old = merged.get(key)
        if (
            isinstance(value, dict)
            and isinstance(old, dict)
            and key not in _REPLACED_WHOLE
            and (
                key in _ALWAYS_MERGED or "type" not in value or value.get("type") == old.get("type")
            )
        ):
            merged[key] = merge_session_update(old, value)
        else:
            merged[key] = value
    return merged
