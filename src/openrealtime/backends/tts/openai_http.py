"""Any OpenAI-compatible `/v1/audio/speech` endpoint: speaches, Kokoro-FastAPI, OpenAI itself.

Asks for `response_format: "pcm"` (raw PCM16 mono, 24 kHz at OpenAI) and streams the body, so
audio leaves as the server produces it rather than when the whole clip is done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from openrealtime.backends.errors import BackendError

_HINT = "check --tts-base-url / --tts-model"
_SPEED_MIN, _SPEED_MAX = 0.25, 4.0  # what /v1/audio/speech accepts


class OpenAISpeechSynthesizer:
    name = "openai"

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
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout)

    def resolve_voice(self, voice: str) -> str | None:
        # The server knows its voices; an unknown one fails there with its own message.
        return voice.strip() or None

    async def synthesize(self, text: str, voice: str, speed: float = 1.0) -> AsyncIterator[bytes]:
        body = {
            "model": self.model,
            "input": text,
            "voice": voice,
            "response_format": "pcm",
            "speed": max(_SPEED_MIN, min(_SPEED_MAX, speed)),
        }
        carry = b""  # an odd trailing byte: half a sample, completed by the next chunk
        try:
            async with self._client.stream("POST", self.url, json=body) as response:
                if not response.is_success:
                    excerpt = (await response.aread())[:300].decode(errors="replace").strip()
                    raise BackendError(
                        "tts",
                        f"POST {self.url} answered {response.status_code}: {excerpt!r}; {_HINT}",
                    )
                async for chunk in response.aiter_bytes():
                    chunk = carry + chunk
                    cut = len(chunk) & ~1
                    carry = chunk[cut:]
                    if cut:
                        yield chunk[:cut]
        except httpx.TimeoutException as e:
            raise BackendError("tts", f"POST {self.url} timed out ({_describe(e)}); {_HINT}") from e
        except httpx.HTTPError as e:
            raise BackendError("tts", f"POST {self.url} failed ({_describe(e)}); {_HINT}") from e

    async def aclose(self) -> None:
        await self._client.aclose()


def _describe(e: Exception) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
