"""`openrealtime serve`: start the server."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from pydantic import ValidationError

from . import __version__
from .backends.errors import BackendError
from .backends.registry import DETECTORS, LLMS, SYNTHESIZERS, TRANSCRIBERS, check_settings
from .config import Settings


def _true_or_false(value: str) -> bool:
    if value.lower() in ("true", "1", "yes", "on"):
        return True
    if value.lower() in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not '{value}'")


# flag -> Settings field; each also reads OPENREALTIME_<FIELD>.
_FLAGS: list[tuple[str, str, dict[str, Any]]] = [
    ("--host", "host", {"help": "address to listen on (default 127.0.0.1)"}),
    ("--port", "port", {"type": int, "help": "port (default 8000)"}),
    ("--api-key", "api_keys", {"action": "append", "help": "a standard API key; repeatable"}),
    (
        "--insecure",
        "insecure",
        {
            "action": "store_true",
            "default": None,
            "help": "allow open mode (no keys) on a non-loopback host",
        },
    ),
    (
        "--ws-per-message-deflate",
        "ws_per_message_deflate",
        {"action": "store_true", "default": None, "help": "enable WebSocket compression (slower)"},
    ),
    ("--log-level", "log_level", {"help": "debug, info, warning, error"}),
    (
        "--log-format",
        "log_format",
        {"choices": ["text", "json"], "help": "text (default), or json: one object per line"},
    ),
    (
        "--metrics",
        "metrics",
        {
            "action": argparse.BooleanOptionalAction,
            "help": "serve Prometheus metrics at /metrics, unauthenticated (default: on)",
        },
    ),
    (
        "--no-console",
        "console",
        {
            "action": "store_false",
            "default": None,
            "help": "do not serve the browser console at / (it lets anyone who can reach the "
            "server talk to it)",
        },
    ),
    (
        "--cors-allow-origins",
        "cors_allow_origins",
        {
            "help": "comma-separated origins of browser pages that may use the API "
            "(https://app.example.com); * for any (default: *)"
        },
    ),
    (
        "--mcp-allow-hosts",
        "mcp_allow_hosts",
        {
            "help": "comma-separated MCP server hosts sessions may reach besides public "
            "addresses: names, IPs or networks (10.0.0.0/8); * for any (default: none, so "
            "loopback, private and link-local addresses are refused)"
        },
    ),
    (
        "--mcp-timeout",
        "mcp_timeout",
        {"type": float, "help": "seconds before an MCP tool call fails (default 30)"},
    ),
    ("--llm", "llm", {"help": f"language model backend: {', '.join(LLMS)}"}),
    ("--llm-base-url", "llm_base_url", {"help": "OpenAI-compatible Chat Completions base URL"}),
    ("--llm-model", "llm_model", {"help": "model name sent to the LLM endpoint"}),
    ("--llm-api-key", "llm_api_key", {"help": "API key for the LLM endpoint"}),
    (
        "--llm-timeout",
        "llm_timeout",
        {"type": float, "help": "seconds before an LLM request fails"},
    ),
    (
        "--llm-context-tokens",
        "llm_context_tokens",
        {"type": int, "help": "the LLM's context window in tokens (default 32768)"},
    ),
    (
        "--llm-vision",
        "llm_vision",
        {
            "type": _true_or_false,
            "metavar": "true|false",
            "help": "whether the LLM reads images; false refuses input_image items (default true)",
        },
    ),
    ("--stt", "stt", {"help": f"speech-to-text backend: {', '.join(TRANSCRIBERS)}"}),
    ("--stt-base-url", "stt_base_url", {"help": "base URL for --stt openai"}),
    (
        "--stt-model",
        "stt_model",
        {
            "help": "STT model: for faster-whisper tiny.en (default, packaged), base (packaged, multilingual), base.en, small, a hub id or a local CTranslate2 directory"
        },
    ),
    (
        "--stt-short-window",
        "stt_short_window",
        {
            "type": _true_or_false,
            "metavar": "true|false",
            "help": "faster-whisper: decode turns up to 8 s in a 10 s window instead of 30 s, "
            "a third of the CPU (default true; docs/models.md)",
        },
    ),
    (
        "--translation-stt-model",
        "translation_stt_model",
        {
            "help": "faster-whisper model of translation sessions (default: base, packaged and "
            "multilingual, when the recognizer is English-only; else the recognizer itself)"
        },
    ),
    (
        "--stt-beam-size",
        "stt_beam_size",
        {
            "type": int,
            "help": "faster-whisper: the decoder's beam width, 1 for greedy (default 5; "
            "docs/models.md)",
        },
    ),
    ("--stt-api-key", "stt_api_key", {"help": "API key for --stt openai"}),
    (
        "--stt-timeout",
        "stt_timeout",
        {"type": float, "help": "seconds before an --stt openai request fails (default 30)"},
    ),
    (
        "--stt-workers",
        "stt_workers",
        {
            "type": int,
            "help": "run the recognizer in N worker processes, replaced if they die "
            "(default 0: in the server process)",
        },
    ),
    ("--tts", "tts", {"help": f"text-to-speech backend: {', '.join(SYNTHESIZERS)}"}),
    ("--tts-base-url", "tts_base_url", {"help": "base URL for --tts openai"}),
    ("--tts-model", "tts_model", {"help": "model name for --tts openai"}),
    ("--tts-api-key", "tts_api_key", {"help": "API key for --tts openai"}),
    (
        "--tts-timeout",
        "tts_timeout",
        {"type": float, "help": "seconds before an --tts openai request fails (default 30)"},
    ),
    ("--vad", "vad", {"help": f"voice activity detection backend: {', '.join(DETECTORS)}"}),
    # Limits (docs/protocol.md, "Limits").
    (
        "--max-session-minutes",
        "max_session_minutes",
        {"type": float, "help": "a session's maximum length; 0: none (default 60)"},
    ),
    (
        "--max-sessions",
        "max_sessions",
        {"type": int, "help": "concurrent sessions in this process (default 500)"},
    ),
    (
        "--max-sessions-per-key",
        "max_sessions_per_key",
        {"type": int, "help": "concurrent sessions per API key or client secret (default 100)"},
    ),
    (
        "--shutdown-grace-seconds",
        "shutdown_grace_seconds",
        {"type": float, "help": "on SIGTERM, how long active responses may finish (default 10)"},
    ),
    (
        "--send-queue-limit",
        "send_queue_limit",
        {
            "type": int,
            "help": "events queued for one client before it counts as not reading and is "
            "closed (default 4096)",
        },
    ),
    (
        "--send-queue-bytes",
        "send_queue_bytes",
        {"type": int, "help": "and their size in bytes (default 16 MiB)"},
    ),
    (
        "--workers",
        "workers",
        {
            "type": int,
            "help": "server processes sharing the port, each with its own models; from 2, "
            "they share state through --redis-url, or a private redis-server (default 1)",
        },
    ),
    (
        "--sip-port",
        "sip_port",
        {"type": int, "help": "take SIP calls on this port, UDP and TCP on --host (default: off)"},
    ),
    (
        "--sip-webhook-url",
        "sip_webhook_url",
        {"help": "where the realtime.call.incoming webhook of each call goes"},
    ),
    (
        "--webhook-secret",
        "webhook_secret",
        {"help": "whsec_... secret the webhooks are signed with (Standard Webhooks)"},
    ),
    (
        "--sip-public-address",
        "sip_public_address",
        {"help": "the address callers send RTP to, given in the SDP (behind NAT)"},
    ),
    (
        "--rtp-ports",
        "rtp_ports",
        {"help": "UDP port range for calls' RTP, LO-HI (default 10000-20000)"},
    ),
    (
        "--sip-webhook-headers",
        "sip_webhook_headers",
        {
            "help": "comma-separated INVITE headers the webhook carries, e.g. From,To,Call-ID "
            "(default: all, verbatim)"
        },
    ),
    (
        "--sip-ring-timeout",
        "sip_ring_timeout",
        {
            "type": float,
            "help": "seconds a call rings before it is refused with 480 (default 30, < 60)",
        },
    ),
    (
        "--redis-url",
        "redis_url",
        {
            "help": "share client secrets, calls and per-key limits with other instances "
            "through this Redis (redis://host:6379/0); unset: all state stays in this process"
        },
    ),
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not argparse's usage block (which lists every flag)."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parse_settings(argv: list[str]) -> Settings:
    parser = _Parser(prog="openrealtime", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the Realtime API server")
    for flag, field, options in _FLAGS:
        serve.add_argument(flag, dest=field, **{"default": None, **options})
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    return Settings(**overrides)


def main(argv: list[str] | None = None) -> None:
    """Refuse a configuration that cannot work before the server starts: one line on stderr
    that says what to change, and exit status 2."""
    try:
        settings = parse_settings(sys.argv[1:] if argv is None else argv)
        settings.check()
        check_settings(settings)
        if settings.workers > 1:
            from .server.supervisor import check_supervisor

            check_supervisor(settings)
    except ValidationError as exc:
        _refuse(_invalid_setting(exc))
    except BackendError as exc:
        _refuse(exc.message)
    except ValueError as exc:
        _refuse(str(exc))
    if settings.workers > 1:
        from .server.supervisor import supervise

        sys.exit(supervise(settings))
    from .server.run import run

    run(settings)


def _refuse(message: str) -> NoReturn:
    print(f"openrealtime: {message}", file=sys.stderr)
    sys.exit(2)


def _invalid_setting(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    where = f"--{field.replace('_', '-')} (or OPENREALTIME_{field.upper()})"
    return f"invalid {where}: {error['msg']}"
