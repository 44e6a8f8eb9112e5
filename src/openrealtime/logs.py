"""Logging set-up: one logger per module (`logging.getLogger(__name__)`), configured once here.

- Every line about a session or call carries its `session_id` / `call_id`: the code that
  starts one calls `bind_ids(...)` in the task that serves it (a connection's or a request's
  own task, so nothing leaks to the next one); tasks created from there inherit the ids
  (contextvars), and a handler filter copies them onto each record. `extra=` fields are kept
  as structured fields too.
- `text` format: `time level logger: message key=value…`; `json`: one object per line with
  `time`, `level`, `logger`, `message`, the ids, the extra fields and `exc` for a traceback.
- No audio or secrets: nothing here logs event payloads, and as a last line of defence every
  line is scrubbed of the configured keys, bearer tokens, `ek_` client secrets, base64 `audio`
  and `delta` fields, any long base64 run, and SDPs' ICE passwords and user fragments. At debug level, uvicorn has websockets dump every frame and handshake header (audio,
  `Authorization`); those dumps are dropped. Chatty libraries (every HTTP request URL, every
  ICE check) are kept to warnings unless the level is debug.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import IO, Any, Literal
from urllib.parse import urlsplit

import orjson

from .config import Settings

_session_id: ContextVar[str | None] = ContextVar("session_id", default=None)
_call_id: ContextVar[str | None] = ContextVar("call_id", default=None)

IDS = ("session_id", "call_id")
# httpx2 and httpcore2: the MCP client's HTTP (backends/mcp/), a line per request otherwise.
QUIET_LOGGERS = ("httpx", "httpcore", "httpx2", "httpcore2", "mcp", "hpack", "aioice", "websockets")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What a LogRecord holds anyway; anything else on one came in `extra=` and is a field
# (but uvicorn's `color_message`, the message again with terminal colours).
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
    *IDS,
}


def bind_ids(*, session_id: str | None = None, call_id: str | None = None) -> None:
    """Tag the current task's log lines (and those of tasks it creates from now on)."""
    if session_id is not None:
        _session_id.set(session_id)
    if call_id is not None:
        _call_id.set(call_id)


class ContextFilter(logging.Filter):
    """Copies the bound ids onto each record (an `extra=` id given explicitly wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "session_id", None) is None:
            record.session_id = _session_id.get()
        if getattr(record, "call_id", None) is None:
            record.call_id = _call_id.get()
        return True


class Redactor:
    """Scrubs secrets and audio from a formatted line."""

    _PATTERNS = (
        (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), r"\1[redacted]"),
        (re.compile(r"(openai-insecure-api-key\.)[^\s\"',;]+"), r"\1[redacted]"),
        (re.compile(r"\bek_[A-Za-z0-9_\-]{6,}"), "ek_[redacted]"),
        (re.compile(r"(\"(?:audio|delta)\"\s*:\s*\")[A-Za-z0-9+/=]{8,}"), r"\1[redacted]"),
        # An SDP's ICE credentials (aiortc logs whole SDPs at debug level).
        (re.compile(r"(a=ice-(?:pwd|ufrag):)[^\s\"',;]+"), r"\1[redacted]"),
        # Base64 anywhere else (a validation error quoting its input, a traceback).
        (re.compile(r"[A-Za-z0-9+/]{64,}={0,2}"), "[base64 redacted]"),
    )

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Short values would blank out ordinary words; no real key is that short.
        values = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub("[redacted]", text)
        for pattern, replacement in self._PATTERNS:
            text = pattern.sub(replacement, text)
        return text


def secrets_of(settings: Settings) -> list[str]:
    """What the settings hold that must never be logged: keys, and Redis's password."""
    found = [*settings.api_keys, settings.llm_api_key, settings.stt_api_key, settings.tts_api_key]
    if settings.redis_url:
        found.append(urlsplit(settings.redis_url).password)
    return [s for s in found if s]


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor | None = None) -> None:
        super().__init__(TEXT_FORMAT)
        self._redact = redact or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [(k, getattr(record, k, None)) for k in IDS]
        extras += list(_fields(record).items())
        tail = " ".join(f"{k}={v}" for k, v in extras if v is not None)
        if tail:
            head, newline, trace = line.partition("\n")
            line = f"{head} {tail}{newline}{trace}"
        return self._redact(line)


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor | None = None) -> None:
        super().__init__()
        self._redact = redact or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        redact = self._redact
        seconds = int(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        entry: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key in IDS:
            if (value := getattr(record, key, None)) is not None:
                entry[key] = value
        for key, value in _fields(record).items():
            entry.setdefault(key, redact(value) if isinstance(value, str) else value)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        elif record.stack_info:
            entry["exc"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(entry, default=str).decode()


class WireDumpFilter(logging.Filter):
    """Drops websockets' debug dumps of frames and handshake headers (uvicorn logs them under
    `uvicorn.error`): they carry audio and `Authorization` headers."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.DEBUG and _from_websockets(record.pathname))


def _from_websockets(path: str) -> bool:
    return f"{_SEP}websockets{_SEP}" in path


_SEP = "\\" if sys.platform == "win32" else "/"
_wire_dump_filter = WireDumpFilter()
_HANDLER_MARK = "_openrealtime_handler"


def install_wire_dump_filter() -> None:
    """Idempotent: `addFilter` ignores a filter already there."""
    logging.getLogger("uvicorn.error").addFilter(_wire_dump_filter)
    logging.getLogger("websockets").addFilter(_wire_dump_filter)


def configure_logging(
    level: str = "info",
    log_format: Literal["text", "json"] = "text",
    *,
    secrets: Iterable[str | None] = (),
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every logger's lines to `stream` (stderr) in `log_format`. Replaces a handler an
    earlier call installed; returns the new one."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    redact = Redactor(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter(redact) if log_format == "json" else TextFormatter(redact))
    root.addHandler(handler)
    numeric = logging.getLevelNamesMapping()[level.upper()]
    root.setLevel(numeric)
    quiet = logging.WARNING if numeric > logging.DEBUG else logging.NOTSET
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    install_wire_dump_filter()
    return handler
