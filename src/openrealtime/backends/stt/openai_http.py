"""Speech-to-text through any OpenAI-compatible `POST /audio/transcriptions` endpoint.

Works with OpenAI itself, speaches, vLLM and the like. `base_url` follows the OpenAI SDK
convention and includes the version prefix, e.g. `http://localhost:8000/v1`. The endpoint is not
streamed: the whole utterance goes up as one WAV file and the text comes back at once.
"""

from __future__ import annotations

import io
import logging
import wave
from collections.abc import AsyncIterator

import orjson

from openrealtime.backends.errors import BackendError
from openrealtime.backends.http_client import (
    HTTPSessions,
    Timeouts,
    excerpt,
    request_failed,
    status_failed,
)
from openrealtime.backends.stt.base import (
    SAMPLE_RATE,
    TranscriptDone,
    TranscriptEvent,
    TranscriptionOptions,
    whole_transcript,
)
from openrealtime.backends.stt.streaming import BatchTranscriber

log = logging.getLogger(__name__)

SERVICE = "The speech-to-text backend"
_FLAG_HINT = "check --stt-base-url / --stt-model"


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
        # The operator's model wins; the client's is used only when none is configured.
        self.model = model
        self._timeout = timeout
        # The whole exchange is bounded: one upload, one short JSON answer.
        self._http = HTTPSessions(base_url, api_key, Timeouts(total=timeout))
        self._url = self._http.url("/audio/transcriptions")
        self.url = str(self._url)

    async def transcribe(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]:
        if len(pcm16k) < 2:
            yield TranscriptDone("", 0.0)
            return
        for event in whole_transcript(await self._post(pcm16k, options), pcm16k):
            yield event

    async def _post(self, pcm16k: bytes, options: TranscriptionOptions) -> str:
        import aiohttp  # imported with the first request, not at start (issue 9)

        form = aiohttp.FormData()
        form.add_field("response_format", "json")
        model = self.model or options.model
        if model:
            form.add_field("model", model)
        if options.language:
            form.add_field("language", options.language)
        if options.prompt:
            form.add_field("prompt", options.prompt)
        form.add_field("file", pcm16_to_wav(pcm16k), filename="audio.wav", content_type="audio/wav")
        try:
            async with self._http.session().post(self._url, data=form) as response:
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._hinted(
                request_failed("stt", SERVICE, self._url, exc, self._timeout)
            ) from None
        if not 200 <= response.status < 300:
            raise self._hinted(status_failed("stt", SERVICE, self.url, response.status, raw))
        try:
            text = orjson.loads(raw)["text"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            text = None
        if not isinstance(text, str):
            raise self._hinted(
                BackendError(
                    "stt",
                    f"{SERVICE} sent an answer that is not a transcription.",
                    code="stt_bad_response",
                    detail=f"{self.url} answered {excerpt(raw)!r}",
                )
            )
        return text.strip()

    def _hinted(self, error: BackendError) -> BackendError:
        model = self.model or "(the client's)"
        error.detail += f" (model {model}); {_FLAG_HINT}"
        return error

    async def aclose(self) -> None:
        await self._http.aclose()
