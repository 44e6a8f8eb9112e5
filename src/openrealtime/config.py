"""Settings: a command-line flag wins over an environment variable (OPENREALTIME_*).

This is the only module that reads the environment.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
ENV_PREFIX = "OPENREALTIME_"


class Settings(BaseModel):
    """The values given win over OPENREALTIME_<FIELD> (any case), which win over the defaults.
    A plain model reading the environment itself: pydantic-settings cost ~0.1 s of start
    (issue 9). A list is comma-separated there."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**_environment(), **values})

    host: str = "127.0.0.1"
    port: int = 8000
    # Standard API keys; none means any key is accepted (open mode).
    api_keys: list[str] = Field(default_factory=list)
    insecure: bool = False
    ws_per_message_deflate: bool = False
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"  # json: one object per line
    # Prometheus metrics at /metrics, unauthenticated (docs/operations.md).
    metrics: bool = True
    # The browser console at `/`; it mints client secrets for anyone who can reach the server.
    console: bool = True
    # Origins of browser pages that may call the API (CORS) and open WebSockets; "*": any.
    # Comma-separated in OPENREALTIME_CORS_ALLOW_ORIGINS. Why "*" is the default: server/cors.py.
    cors_allow_origins: list[str] = Field(default_factory=lambda: ["*"])
    # MCP servers sessions may reach beyond public addresses: host names, IPs, networks, or "*".
    # Comma-separated in OPENREALTIME_MCP_ALLOW_HOSTS. Why the default is none: backends/mcp/hosts.py.
    mcp_allow_hosts: list[str] = Field(default_factory=list)
    mcp_timeout: float = 30.0  # seconds for one MCP tool call (or listing)

    # Limits (OpenAI's where it documents them).
    max_session_minutes: float = 60.0
    max_sessions: int = 500  # per process
    max_sessions_per_key: int = 100
    shutdown_grace_seconds: float = 10.0  # SIGTERM: let active responses finish this long
    send_queue_limit: int = 4096  # events queued for a client that is not reading
    send_queue_bytes: int = 16 * 1024 * 1024  # and their bytes (an audio delta is up to ~100 KB)
    # Shared state for several processes; unset: everything stays in-process.
    redis_url: str | None = None
    # Server processes behind the one port (server/supervisor.py); 1: this process serves.
    workers: int = Field(default=1, ge=1, le=64)

    # SIP calls (docs/operations.md): off unless a port is given. An INVITE rings, and the
    # `realtime.call.incoming` webhook goes to the URL, signed with the `whsec_` secret.
    sip_port: int | None = Field(default=None, ge=1, le=65535)
    sip_webhook_url: str | None = None
    webhook_secret: str | None = None
    sip_public_address: str | None = None  # the address in the SDP (NAT); unset: the local one
    rtp_ports: str = "10000-20000"  # LO-HI, the UDP ports calls' RTP binds
    sip_ring_timeout: float = Field(default=30.0, gt=0, lt=60)
    # The INVITE headers the webhook carries, by name (any case); empty: all of them.
    sip_webhook_headers: list[str] = Field(default_factory=list)

    # Backends by name (backends/registry.py lists the names each accepts).
    llm: str = "openai"  # any OpenAI-compatible Chat Completions endpoint
    vad: str = "silero"
    llm_base_url: str = "http://127.0.0.1:11434/v1"
    llm_model: str = "llama3.2"
    llm_api_key: str | None = None
    llm_timeout: float = 60.0
    # The model's context window, for truncation (`session.truncation`): OpenAI's realtime
    # models have 32k; set it to what the served model has (Ollama's num_ctx, vLLM's max_model_len).
    llm_context_tokens: int = 32768
    # Whether the served model reads images (`input_image` content). Off: image items are
    # refused with `image_input_not_supported` rather than sent to a model that drops them.
    llm_vision: bool = True

    # Whisper tiny.en (faster-whisper, weights from a pinned package) and hibari: embedded,
    # nothing downloaded. pocketsphinx and espeak remain for the smallest installs.
    stt: str = "faster-whisper"
    stt_base_url: str | None = None
    stt_model: str | None = None  # --stt faster-whisper: tiny.en unless set
    # --stt faster-whisper: turns up to 8 s in a 10 s encoder window, not Whisper's 30 s: a
    # third of the CPU and the transcript ready at speech_stopped, with the same word error
    # rate on the benchmark's 396 clips (docs/models.md); false: always the 30 s window.
    stt_short_window: bool = True
    # Translation sessions need a multilingual recognizer: Whisper base (packaged) when the one
    # above is English-only (tiny.en, pocketsphinx), loaded on the first translation session;
    # otherwise the one above. Set: this faster-whisper model (as --stt-model names them).
    translation_stt_model: str | None = None
    # --stt faster-whisper: the decoder's beam; 5 is faster-whisper's and Whisper's own default:
    # 8.1% WER on the benchmark against 10.7% greedy (docs/models.md).
    stt_beam_size: int = Field(default=5, ge=1, le=16)
    stt_api_key: str | None = None
    stt_timeout: float = 30.0  # --stt openai
    # Model worker processes that run the recognizer (backends/workers.py); 0: in-process.
    stt_workers: int = Field(default=0, ge=0, le=64)

    tts: str = "hibari"
    tts_base_url: str | None = None
    tts_model: str | None = None
    tts_api_key: str | None = None
    tts_timeout: float = 30.0  # --tts openai

    @field_validator("api_keys", "mcp_allow_hosts", "sip_webhook_headers", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        # An origin has no path: "https://app.example.com/" is written for "https://app.example.com".
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            return [o.strip().rstrip("/") for o in value if isinstance(o, str) and o.strip()]
        return value

    @field_validator("rtp_ports")
    @classmethod
    def _check_rtp_ports(cls, value: str) -> str:
        low, _, high = value.partition("-")
        if not (low.strip().isdigit() and high.strip().isdigit()):
            raise ValueError("expected LO-HI, such as 10000-20000")
        if not 1024 <= int(low) < int(high) <= 65535:
            raise ValueError("expected 1024 <= LO < HI <= 65535")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("whsec_"):
            raise ValueError("expected whsec_ followed by base64, as OpenAI's dashboard gives")
        return value

    @property
    def rtp_port_range(self) -> tuple[int, int]:
        low, _, high = self.rtp_ports.partition("-")
        return int(low), int(high)

    @property
    def open_mode(self) -> bool:
        return not self.api_keys

    def check(self) -> None:
        """Refuse configurations that are unsafe; raises ValueError with what to change."""
        if self.open_mode and self.host not in LOOPBACK_HOSTS and not self.insecure:
            raise ValueError(
                f"refusing to listen on {self.host} with no API keys configured: anyone could use "
                "this server. Give --api-key KEY (or OPENREALTIME_API_KEYS), or pass --insecure."
            )
        if self.sip_port is not None and not self.sip_webhook_url:
            raise ValueError(
                "--sip-port needs --sip-webhook-url (or OPENREALTIME_SIP_WEBHOOK_URL): calls "
                "ring there, and ring out unanswered without it."
            )


def _environment() -> dict[str, str]:
    fields = Settings.model_fields
    found: dict[str, str] = {}
    for name, value in os.environ.items():
        if name.upper().startswith(ENV_PREFIX):
            field = name[len(ENV_PREFIX) :].lower()
            if field in fields:
                found[field] = value
    return found
