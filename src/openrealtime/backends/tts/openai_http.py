"""Any OpenAI-compatible `/v1/audio/speech` endpoint: speaches, Kokoro-FastAPI, OpenAI itself.

Asks for `response_format: "pcm"` (raw PCM16 mono, 24 kHz at OpenAI) and streams the body, so
audio leaves as the server produces it rather than when the whole clip is done.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import orjson

from openrealtime.backends.base import BackendBase, Capabilities
from openrealtime.backends.errors import BackendError
from openrealtime.backends.http_client import (
    HTTPSessions,
    request_failed,
    status_failed,
    timeouts,
)

SERVICE = "The text-to-speech backend"
_HINT = "check --tts-base-url / --tts-model"
_SPEED_MIN, _SPEED_MAX = 0.25, 4.0  # what /v1/audio/speech accepts


class OpenAISpeechSynthesizer(BackendBase):
    name = "openai"
    capabilities = Capabilities(streaming=True)  # the body is read as the server sends it

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        model: str = "tts-1",
        timeout: float = 30.0,
        sample_rate: int = 24000,
    ) -> None:
        self.model = model
        self.sample_rate = sample_rate
        self._timeout = timeout
        # Bounds the connection and each wait for audio, not the whole clip.
        self._http = HTTPSessions(base_url, api_key, timeouts(timeout))
        self._url = self._http.url("/audio/speech")
        self.url = str(self._url)

    def resolve_voice(self, voice: str) -> str | None:
        # The server knows its voices; an unknown one fails there with its own message.
        return voice.strip() or None

    async def synthesize(
        self, text: str, voice: str, speed: float = 1.0
    ) -> AsyncGenerator[bytes, None]:
        import aiohttp  # imported with the first request, not at start (issue 9)

        body = orjson.dumps(
            {
                "model": self.model,
                "input": text,
                "voice": voice,
                "response_format": "pcm",
                "speed": max(_SPEED_MIN, min(_SPEED_MAX, speed)),
            }
        )
        carry = b""  # an odd trailing byte: half a sample, completed by the next chunk
        response = None
        try:
            response = await self._http.session().post(
                self._url, data=body, headers={"Content-Type": "application/json"}
            )
            if not 200 <= response.status < 300:
                raise self._hinted(
                    status_failed("tts", SERVICE, self.url, response.status, await response.read())
                )
            read = response.content.readany
            while chunk := await read():
                chunk = carry + chunk
                cut = len(chunk) & ~1
                carry = chunk[cut:]
                if cut:
                    yield chunk[:cut]
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._hinted(
                request_failed("tts", SERVICE, self._url, exc, self._timeout)
            ) from None
        finally:
            if response is not None:
                response.close()  # abandoned mid-clip (barge-in): stop the server's synthesis

    def _hinted(self, error: BackendError) -> BackendError:
        error.detail += f"; {_HINT}"
        return error

    async def aclose(self) -> None:
        await self._http.aclose()
