"""The translation session's transports: the socket (`/v1/realtime/translations`), the WebSocket
transport's pump with the translation surface's own events; and what a WebRTC call
(`/v1/realtime/translations/calls`, transports/webrtc.py's peer) needs of a translation session:

- `TranslationCallDriver`: the driver as a peer owns it, `session.created` first (the socket
  sends it as `first`).
- `TranslationMedia`: the track's audio is appended as 24 kHz PCM16; the translated speech goes
  on the track only (OpenAI sends a call's audio as media: no `session.output_audio.delta` on
  the data channel); and `session.input_audio_buffer.append` is refused, since the audio comes
  on the track.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from starlette.websockets import WebSocket

from ..audio import formats
from ..audio.resample import StreamResampler
from ..protocol import errors
from ..protocol import translation as wire
from ..protocol.errors import ProtocolError
from ..protocol.server_events import AUDIO_DELTA, ServerEvent
from ..runtime.translation import TranslationDriver
from .ending import Ending
from .playout import Playout
from .send_queue import QueueLimits
from .websocket import run_websocket

OUTPUT_AUDIO_DELTA = "session.output_audio.delta"
APPEND = "session.input_audio_buffer.append"
# A phrase's speech is played as one response; it is over when the next phrase's begins, or
# when none has come for this long (the synthesizer runs ahead of real time).
PHRASE_GAP_S = 0.5
PLAYOUT_RATE = formats.sample_rate(formats.AudioFormat.PCM)  # the playout reads audio/pcm


class TranslationDialect:
    name = "translation"

    def parse(self, raw: str | bytes) -> Any:
        return wire.parse_client_event(raw)

    def encode(self, event: dict[str, Any]) -> str | None:
        return orjson.dumps(event).decode()


class TranslationCallDialect(TranslationDialect):
    """On a call's data channel: the audio comes on the track, not as events."""

    def parse(self, raw: str | bytes) -> Any:
        event = super().parse(raw)
        if isinstance(event, wire.AudioAppend):
            raise ProtocolError(
                f"'{APPEND}' is not used on a WebRTC call: the call's audio track carries the "
                "speech to translate.",
                errors.UNKNOWN_EVENT_TYPE,
                "type",
                event_id=event.event_id,
            )
        return event


async def run_translation_websocket(
    websocket: WebSocket, driver: TranslationDriver, *, ending: Ending, limits: QueueLimits
) -> None:
    """Pump one accepted socket until the client goes away; the session's work then stops."""
    driver.start()
    try:
        await run_websocket(
            websocket,
            driver,
            TranslationDialect(),
            owner=False,
            first=wire.session_created(driver.session.snapshot()),
            ending=ending,
            limits=limits,
        )
    finally:
        await driver.close()


class TranslationCallDriver:
    """A translation driver as a WebRTC peer owns it (transports/webrtc.py `CallDriver`)."""

    def __init__(self, driver: TranslationDriver) -> None:
        self.driver = driver
        self._sinks: list[Callable[[ServerEvent], None]] = []

    def add_sink(self, sink: Callable[[ServerEvent], None]) -> None:
        self._sinks.append(sink)
        self.driver.add_sink(sink)

    def remove_sink(self, sink: Callable[[ServerEvent], None]) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)
        self.driver.remove_sink(sink)

    def receive(self, event: Any) -> None:
        self.driver.receive(event)

    def reject(self, error: ProtocolError) -> None:
        self.driver.reject(error)

    def start(self) -> None:
        created = wire.session_created(self.driver.session.snapshot())
        for sink in list(self._sinks):  # the peer's: queued until the data channel opens
            sink(created)
        self.driver.start()

    async def close(self) -> None:
        await self.driver.close()


class TranslationMedia:
    """A translation session's audio on a call (transports/webrtc.py `CallMedia`)."""

    audio_delta = OUTPUT_AUDIO_DELTA

    def __init__(self, driver: TranslationDriver) -> None:
        self._driver = driver
        self._phrases: PhrasePlayout | None = None

    def input_rate(self) -> int:
        return wire.INPUT_RATE

    def append(self, pcm: np.ndarray) -> None:
        self._driver.append_audio(formats.encode(formats.AudioFormat.PCM, pcm))

    def new_playout(self) -> Playout:
        # The playout's own events (`output_audio_buffer.*`) and positions are a voice
        # session's; a translation has no turn to truncate.
        return Playout(emit=_ignore, on_position=lambda item, ms, playing: None)

    def play_into(self, playout: Playout | None) -> None:
        if self._phrases is not None:
            self._driver.remove_sink(self._phrases.take)
            self._phrases.finish()
            self._phrases = None
        if playout is not None:
            self._phrases = PhrasePlayout(playout)
            self._driver.add_sink(self._phrases.take)


class PhrasePlayout:
    """Feeds a translation's speech to a `Playout`, which plays voice responses: each phrase's
    speech (its `elapsed_ms`) is one response, resampled to audio/pcm as one stream, and done
    when the next phrase's speech begins or none has come for PHRASE_GAP_S."""

    def __init__(self, playout: Playout) -> None:
        self._playout = playout
        self._count = 0
        self._response: str | None = None
        self._elapsed: int | None = None
        self._resampler: StreamResampler | None = None
        self._timer: asyncio.TimerHandle | None = None

    def take(self, event: ServerEvent) -> None:
        if event["type"] != OUTPUT_AUDIO_DELTA:
            return
        if self._response is not None and event["elapsed_ms"] != self._elapsed:
            self.finish()
        if self._response is None or self._resampler is None:
            self._count += 1
            self._response = f"phrase_{self._count}"
            self._elapsed = event["elapsed_ms"]
            self._resampler = StreamResampler(int(event["sample_rate"]), PLAYOUT_RATE)
        pcm = np.frombuffer(base64.b64decode(event["delta"]), "<i2")
        self._play(self._resampler.process(pcm))
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(PHRASE_GAP_S, self.finish)

    def finish(self) -> None:
        """The phrase's speech is over: its last samples are queued, and the playout told."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._response is None or self._resampler is None:
            return
        self._play(self._resampler.flush())
        self._playout.take({"type": "response.done", "response": {"id": self._response}})
        self._response = self._resampler = None

    def _play(self, pcm: np.ndarray) -> None:
        if len(pcm) and self._response is not None:
            delta = base64.b64encode(pcm.astype("<i2", copy=False).tobytes()).decode()
            self._playout.take(
                {
                    "type": AUDIO_DELTA,
                    "response_id": self._response,
                    "item_id": self._response,
                    "delta": delta,
                }
            )


def _ignore(event: ServerEvent) -> None:
    pass
