"""Any OpenAI-compatible `/v1/audio/speech` endpoint: speaches, Kokoro-FastAPI, OpenAI itself.

Asks for `response_format: "pcm"` (raw PCM16 mono, 24 kHz at OpenAI) and streams the body, so
audio leaves as the server produces it rather than when the whole clip is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import orjson

from openrealtime.backends.base import BackendBase, Capabilities
from openrealtime.backends.errors import BackendError
from openrealtime.backends.http_client import HTTPClient, HTTPError

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
        self.url = base_url.rstrip("/") + "/audio/speech"
        self.model = model
        self.sample_rate = sample_rate
        self._timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = HTTPClient(base_url, headers=headers)

    def resolve_voice(self, voice: str) -> str | None:
        # The server knows its voices; an unknown one fails there with its own message.
        return voice.strip() or None

    async def synthesize(
        self, text: str, voice: str, speed: float = 1.0
    ) -> AsyncGenerator[bytes, None]:
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
            async with asyncio.timeout(self._timeout) as deadline:
                response = await self._http.request(
                    "POST", "/audio/speech", body, {"Content-Type": "application/json"}
                )
                if not 200 <= response.status < 300:
                    excerpt = (await response.read())[:300].decode(errors="replace").strip()
                    raise BackendError(
                        "tts", f"POST {self.url} answered {response.status}: {excerpt!r}; {_HINT}"
                    )
                async for chunk in response.chunks():
                    chunk = carry + chunk
                    cut = len(chunk) & ~1
                    carry = chunk[cut:]
                    if cut:
                        yield chunk[:cut]
                    # The timeout bounds each wait for audio, not the whole clip.
                    deadline.reschedule(asyncio.get_running_loop().time() + self._timeout)
        except TimeoutError:
            raise BackendError(
                "tts", f"POST {self.url} timed out after {self._timeout:g} s; {_HINT}"
            ) from None
        except HTTPError as e:
            raise BackendError("tts", f"POST {self.url} failed ({e}); {_HINT}") from e
        finally:
            if response is not None:
                response.close()  # abandoned mid-clip (barge-in): stop the server's synthesis

    async def aclose(self) -> None:
        await self._http.aclose()
