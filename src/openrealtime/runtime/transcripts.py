"""One streaming transcription, fed in order from the event loop without ever blocking it:
audio goes on a queue, one task feeds the backend and reports partials and the result."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..backends.errors import BackendError
from ..backends.stt.base import TranscriptionStream

log = logging.getLogger(__name__)

# As the driver says it for a batch transcription (runtime/driver.py imports this one).
TRANSCRIPTION_FAILED = "The server had an error while transcribing this audio."
_FINISH = b""  # audio chunks are never empty, so an empty one marks the end


class TranscriptFeed:
    def __init__(
        self,
        stream: TranscriptionStream,
        *,
        partial: Callable[[str], None],
        done: Callable[[str, float], None],
        failed: Callable[[str, str], None],
    ) -> None:
        self._stream = stream
        self._partial = partial
        self._done = done
        self._failed = failed
        self._audio: asyncio.Queue[bytes] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def feed(self, pcm16k: bytes) -> None:
        if pcm16k:
            self._audio.put_nowait(pcm16k)

    def finish(self) -> None:
        self._audio.put_nowait(_FINISH)

    def close(self) -> None:
        """Drop it: the turn was cleared, or the client left."""
        self._task.cancel()

    async def _run(self) -> None:
        try:
            finishing = False
            while not finishing:
                parts = [await self._audio.get()]
                # Feed everything already queued at once: fewer hops when the decoder lags.
                while not self._audio.empty():
                    parts.append(self._audio.get_nowait())
                if _FINISH in parts:
                    finishing = True
                    parts = parts[: parts.index(_FINISH)]
                if parts:
                    text = await self._stream.feed(b"".join(parts))
                    if text is not None:
                        self._partial(text)
            result = await self._stream.finish()
            self._done(result.text, result.audio_seconds)
        except BackendError as exc:
            log.warning("streaming transcription failed: %s", exc)
            self._failed(exc.code, exc.message)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: the client gets a plain message, the log the exception
            log.exception("streaming transcription failed unexpectedly")
            self._failed("server_error", TRANSCRIPTION_FAILED)
        finally:
            await self._stream.aclose()
