"""Speech-to-text through any OpenAI-compatible `POST /audio/transcriptions` endpoint.

Works with OpenAI itself, speaches, vLLM and the like. `base_url` follows the OpenAI SDK
convention and includes the version prefix, e.g. `http://localhost:8000/v1`. The endpoint is not
streamed: the whole utterance goes up as one WAV file and the text comes back at once.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import wave
from collections.abc import AsyncIterator

import orjson

from openrealtime.backends.errors import BackendError
from openrealtime.backends.http_client import HTTPClient, HTTPError
from openrealtime.backends.stt.base import (
    SAMPLE_RATE,
    TranscriptDone,
    TranscriptEvent,
    TranscriptionOptions,
    whole_transcript,
)
from openrealtime.backends.stt.streaming import BatchTranscriber

log = logging.getLogger(__name__)

_FLAG_HINT = "check --stt-base-url / --stt-model"
_EXCERPT_CHARS = 200


def pcm16_to_wav(pcm16k: bytes, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Mono PCM16 little-endian → a WAV file (44-byte header + the samples)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm16k[: len(pcm16k) // 2 * 2])
    return buffer.getvalue()


class OpenAITranscriber(BatchTranscriber):
    """A `Transcriber` backed by an HTTP service; one connection pool shared by all sessions."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = base_url.rstrip("/") + "/audio/transcriptions"
        # The operator's model wins; the client's is used only when none is configured.
        self.model = model
        self._timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = HTTPClient(base_url, headers=headers)

    async def transcribe(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]:
        if len(pcm16k) < 2:
            yield TranscriptDone("", 0.0)
            return
        for event in whole_transcript(await self._post(pcm16k, options), pcm16k):
            yield event

    async def _post(self, pcm16k: bytes, options: TranscriptionOptions) -> str:
        fields = {"response_format": "json"}
        model = self.model or options.model
        if model:
            fields["model"] = model
        if options.language:
            fields["language"] = options.language
        if options.prompt:
            fields["prompt"] = options.prompt
        body, content_type = multipart(
            fields, ("file", "audio.wav", "audio/wav", pcm16_to_wav(pcm16k))
        )
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._http.request(
                    "POST", "/audio/transcriptions", body, {"Content-Type": content_type}
                )
                raw = await response.read()
        except TimeoutError:
            raise self._error(f"timed out after {self._timeout:g} s") from None
        except HTTPError as exc:
            raise self._error(f"request failed ({exc})") from exc
        if not 200 <= response.status < 300:
            raise self._error(
                f"returned HTTP {response.status}: {_excerpt(raw.decode('utf-8', 'replace'))!r}"
            )
        try:
            text = orjson.loads(raw)["text"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise self._error(
                f"returned a body that is not transcription JSON: "
                f"{_excerpt(raw.decode('utf-8', 'replace'))!r}"
            ) from exc
        if not isinstance(text, str):
            raise self._error(
                f"returned a non-string 'text': {_excerpt(raw.decode('utf-8', 'replace'))!r}"
            )
        return text.strip()

    def _error(self, what: str) -> BackendError:
        model = self.model or "(the client's)"
        return BackendError(
            "stt", f"transcription request to {self.url} (model {model}) {what}; {_FLAG_HINT}"
        )

    async def aclose(self) -> None:
        await self._http.aclose()


def multipart(fields: dict[str, str], file: tuple[str, str, str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body with text fields and one file; and its Content-Type."""
    boundary = "openrealtime-" + secrets.token_hex(12)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    name, filename, content_type, data = file
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _excerpt(body: str) -> str:
    body = body.strip()
    return body if len(body) <= _EXCERPT_CHARS else body[:_EXCERPT_CHARS] + "…"
