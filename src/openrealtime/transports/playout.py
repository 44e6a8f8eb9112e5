"""Server-side playback of assistant audio, for transports that carry audio as media (WebRTC;
later SIP): the queue between the synthesizer, which runs ahead of real time, and a media
track that takes one frame every 20 ms.

Fed by the driver's events (`take` is a sink) and pulled by the track (`next_frame`); it
never reads the clock, the track paces it, so it is tested without waiting. Rules:
- Responses play one at a time, in the order their audio began; within a response, its items
  in order. Each item is resampled on its own stream, flushed at `response.output_audio.done`.
- `output_audio_buffer.started` when a response's first samples play; `.stopped` once the
  response is done and its last samples have played; `.cleared` (and no `stopped`) when
  `clear()` drops it. Events leave only from `next_frame` and `clear`, never from inside the
  sink: an event emitted there would reach the other sinks before the one being delivered
  (`stopped` before its `response.done`).
- After each frame the position in the item that played is reported, `(item, ms, True)`;
  when nothing plays (the queue ran dry mid-response, or is empty), once `(item, ms, False)`.
  The core truncates there on barge-in: the user heard exactly that much.
- `clear()` drops everything queued; audio still arriving for a response it cleared is
  dropped too, until that response is done.
- `idle` while a frame would be silence with nothing to emit or report: the track may stop
  pulling then, and `on_audio` tells it when audio is queued again.
"""

from __future__ import annotations

import base64
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..audio import formats
from ..audio.formats import AudioFormat
from ..audio.resample import StreamResampler
from ..protocol import server_events as ev
from ..protocol.server_events import AUDIO_DELTA, ServerEvent

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class _Item:
    id: str
    resampler: StreamResampler
    chunks: deque[np.ndarray] = field(default_factory=deque)
    offset: int = 0  # samples of chunks[0] already played
    played: int = 0  # samples played, at the output rate
    flushed: bool = False  # no more audio will come

    def read_into(self, out: np.ndarray) -> int:
        filled = 0
        while filled < len(out) and self.chunks:
            chunk = self.chunks[0]
            take = min(len(out) - filled, len(chunk) - self.offset)
            out[filled : filled + take] = chunk[self.offset : self.offset + take]
            filled += take
            self.offset += take
            if self.offset == len(chunk):
                self.chunks.popleft()
                self.offset = 0
        self.played += filled
        return filled

    def flush(self) -> None:
        if not self.flushed:
            self.flushed = True
            if len(tail := self.resampler.flush()):
                self.chunks.append(tail)


@dataclass(eq=False, slots=True)
class _Response:
    id: str
    format: AudioFormat
    items: deque[_Item] = field(default_factory=deque)  # not yet fully played
    by_id: dict[str, _Item] = field(default_factory=dict)
    done: bool = False
    started: bool = False


def _nothing() -> None:
    pass


class Playout:
    def __init__(
        self,
        *,
        emit: Callable[[ServerEvent], None],
        on_position: Callable[[str, float, bool], None],
        rate: int = 48000,
        frame_ms: int = 20,
    ) -> None:
        self.rate = rate
        self.frame_samples = rate * frame_ms // 1000
        self._emit = emit
        self._on_position = on_position
        self._formats: dict[str, AudioFormat] = {}  # response id -> its output format
        self._queue: deque[_Response] = deque()
        self._responses: dict[str, _Response] = {}  # the queued ones, by id
        self._cleared: set[str] = set()
        self._playing: _Item | None = None  # the item last reported as playing
        self.on_audio: Callable[[], None] = _nothing  # audio was queued (the track's wake-up)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing left to report: `next_frame` would only give silence."""
        return not self._queue and self._playing is None

    # --- the sink ----------------------------------------------------------------------------

    def take(self, event: ServerEvent) -> None:
        kind = event["type"]
        if kind == AUDIO_DELTA:
            self._audio(event["response_id"], event["item_id"], event["delta"])
        elif kind == "response.output_audio.done":
            response = self._responses.get(event["response_id"])
            if response is not None and (item := response.by_id.get(event["item_id"])):
                item.flush()
        elif kind == "response.created":
            response = event["response"]
            fmt = ((response.get("audio") or {}).get("output") or {}).get("format") or {}
            self._formats[response["id"]] = AudioFormat(fmt.get("type", AudioFormat.PCM))
        elif kind == "response.done":
            response_id = event["response"]["id"]
            self._formats.pop(response_id, None)
            self._cleared.discard(response_id)
            if (queued := self._responses.get(response_id)) is not None:
                queued.done = True
                for item in queued.items:
                    item.flush()

    def _audio(self, response_id: str, item_id: str, delta: str) -> None:
        if response_id in self._cleared:
            return
        response = self._responses.get(response_id)
        if response is None:
            fmt = self._formats.get(response_id, AudioFormat.PCM)
            response = self._responses[response_id] = _Response(response_id, fmt)
            self._queue.append(response)
        item = response.by_id.get(item_id)
        if item is None:
            resampler = StreamResampler(formats.sample_rate(response.format), self.rate)
            item = response.by_id[item_id] = _Item(item_id, resampler)
            response.items.append(item)
        try:
            pcm = formats.decode(response.format, base64.b64decode(delta))
        except ValueError:  # our own synthesizer's output: a bug, not worth a call
            log.exception("undecodable audio delta for %s", item_id)
            return
        if len(resampled := item.resampler.process(pcm)):
            item.chunks.append(resampled)
        self.on_audio()  # the queue holds this response now, even before its first samples

    # --- the track ---------------------------------------------------------------------------

    def next_frame(self) -> np.ndarray:
        """The next frame to play: mono int16 at `rate`, silence where there is nothing."""
        out = np.zeros(self.frame_samples, np.int16)
        filled = 0
        current: _Item | None = None
        while filled < len(out) and self._queue:
            response = self._queue[0]
            if not response.items:
                if not response.done:
                    break  # the synthesizer is behind: wait for more
                self._finish(response)
                if response.started:
                    self._emit(ev.output_audio_buffer_stopped(response.id))
                continue
            item = response.items[0]
            took = item.read_into(out[filled:])
            if took:
                if not response.started:
                    response.started = True
                    self._emit(ev.output_audio_buffer_started(response.id))
                filled += took
                current = item
            if item.chunks:
                continue  # the frame is full
            if not item.flushed:
                break  # dry mid-item
            response.items.popleft()
        self._report(current)
        return out

    def _report(self, current: _Item | None) -> None:
        if current is not None:
            self._playing = current
            self._on_position(current.id, current.played * 1000 / self.rate, True)
        elif (stopped := self._playing) is not None:
            self._playing = None
            self._on_position(stopped.id, stopped.played * 1000 / self.rate, False)

    def _finish(self, response: _Response) -> None:
        self._queue.popleft()
        self._responses.pop(response.id, None)

    # --- the driver's Player -------------------------------------------------------------------

    def clear(self) -> None:
        """Stop at once (barge-in, `output_audio_buffer.clear`): drop everything queued."""
        if self._queue:
            self._emit(ev.output_audio_buffer_cleared(self._queue[0].id))
        self._cleared.update(r.id for r in self._queue if not r.done)
        self._queue.clear()
        self._responses.clear()
        # The core stopped counting this playback when it cleared it; nothing to report.
        self._playing = None
