"""The caller's audio of a WebRTC call: its Opus packets decoded on the loop, as they arrive,
to mono int16 at the session's rate; gaps in the stream (Opus DTX, lost packets) become
silence, so a turn ends when the caller stops sending.

Why not aiortc's own receive path: per packet it holds the audio in a jitter buffer until 4
later packets came (80 ms), hands it through a `queue.Queue` to a decoder thread per call
(a lock notify, a GIL hand-over), decodes to 48 kHz stereo and comes back through
`run_coroutine_threadsafe` (a future and a loop wake-up). That hop was a third of an idle
call's CPU. `InboundAudio` takes the jitter buffer's place on the receiver, so aiortc's SRTP,
RTP parsing and RTCP statistics stay as they are, and it decodes mono inline (~40 µs).

Why gaps matter: with Opus DTX (asked for in our SDP answer, `usedtx=1`) a browser sends a
packet every 400 ms or so while its microphone hears silence, instead of 50 a second. The
session's VAD counts silence in samples, so samples must keep coming: a timestamp jump is
filled with silence when the next packet shows it, and while no packet comes a process-wide
ticker fills silence up to `FILL_SLACK_S` behind where the caller's stream would be now.
A packet that comes later than that is still taken (the caller speaks again), after the
silence: the stream stretches a little rather than lose the start of a word.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from av import CodecContext, Packet
from av.audio.codeccontext import AudioCodecContext

from ..audio.resample import StreamResampler

log = logging.getLogger(__name__)

RATE = 48000  # WebRTC's Opus clock; libopus through FFmpeg always decodes at 48 kHz
_TIME_BASE = fractions.Fraction(1, RATE)
# While no packet comes, silence is filled up to this far behind where the caller's stream
# would be now. It is how late the end of a turn can be seen under DTX (with the tick); a
# packet later than it is not lost, only the stream stretches, so it stays small.
FILL_SLACK_S = 0.03
FILL_TICK_S = 0.04  # how often the ticker looks (one timer for every call of the process)


def opus_decoder() -> AudioCodecContext:
    codec = CodecContext.create("libopus", "r")
    assert isinstance(codec, AudioCodecContext)
    codec.format = "s16"
    codec.layout = "mono"  # libopus downmixes a stereo stream itself, cheaper than we can
    codec.sample_rate = RATE
    return codec


class InboundAudio:
    """Stands in for the audio jitter buffer of an aiortc `RTCRtpReceiver` (`add()` is all
    the receiver calls) and delivers the decoded audio to `deliver(pcm)` at `rate()` Hz."""

    def __init__(self, deliver: Callable[[np.ndarray], None], rate: Callable[[], int]) -> None:
        self._deliver = deliver
        self._rate = rate
        self._decoder = opus_decoder()
        self._resampler: StreamResampler | None = None
        self._held = False  # the resampler has had audio since it was last flushed
        self._origin: int | None = None  # the first packet's RTP timestamp
        self._next = 0  # the stream position (48 kHz samples from the first packet) due next
        # the last packet: when it came and where its audio ended
        self._arrived = 0.0
        self._arrived_end = 0
        self.packets = 0
        self.dropped = 0  # packets that came for a stretch already played
        self.stretched_s = 0.0  # how much late packets after a filled stretch moved it on
        self.filled_s = 0.0  # silence put in for what did not come (DTX, losses)

    # --- what aiortc's receiver calls ---------------------------------------------------------

    def add(self, packet: Any) -> tuple[bool, None]:
        """One RTP packet (depayloaded: `packet._data`). Returns as a jitter buffer does: no
        picture loss to report, no frame for aiortc's decoder."""
        try:
            self._receive(packet.timestamp, packet._data)
        except Exception:  # raised into aiortc's receive loop, it would end the whole call
            log.exception("could not take a packet of the caller's audio")
        return False, None

    # --- the stream ----------------------------------------------------------------------------

    def start(self) -> None:
        _ticker.add(self)

    def stop(self) -> None:
        _ticker.discard(self)

    def _receive(self, timestamp: int, payload: bytes) -> None:
        self.packets += 1
        if self._origin is None:
            self._origin = timestamp
        # The timestamp as a position in the stream, unwrapped around the one due next.
        delta = (timestamp - self._origin - self._next + (1 << 31)) % (1 << 32) - (1 << 31)
        position = self._next + delta
        if position < self._arrived_end:  # reordered, or a duplicate: its time has played
            self.dropped += 1
            return
        if position < self._next:
            # Late for a stretch the ticker filled with silence (a slow network, a busy
            # machine): the caller is speaking again, so this is taken, not dropped, and the
            # stream stretches by the overlap (its positions all move on by as much).
            self.stretched_s += (self._next - position) / RATE
            self._origin = (self._origin - (self._next - position)) % (1 << 32)
            position = self._next
        self._arrived = time.monotonic()
        if not payload:
            return
        if position > self._next:
            self._fill(position)
        try:
            frames = self._decoder.decode(_packet(payload, position))
        except av.FFmpegError as exc:
            log.debug("an Opus packet did not decode: %s", exc)
            frames = []
        samples = 0
        for frame in frames:
            pcm = np.frombuffer(memoryview(frame.planes[0]), np.int16, frame.samples)
            self._emit(self._resample(pcm))
            samples += frame.samples
        self._next = position + (samples or RATE // 50)
        self._arrived_end = self._next

    def fill_to_now(self, now: float) -> None:
        """Silence for what has not come, up to FILL_SLACK_S behind the caller's clock."""
        if self._origin is None:
            return
        behind = now - self._arrived - FILL_SLACK_S
        if behind <= 0:
            return
        target = self._arrived_end + int(behind * RATE)
        if target > self._next:
            self._fill(target)

    def _fill(self, position: int) -> None:
        """Silence from the position due next to `position`, at the output rate."""
        rate = self._rate()
        resampler = self._resampler
        if self._held and resampler is not None and resampler.out_rate == rate:
            self._emit(resampler.flush())  # what the filter still held comes before the gap
        self._held = False
        begin = self._next * rate // RATE
        self._emit(np.zeros(position * rate // RATE - begin, np.int16))
        self.filled_s += (position - self._next) / RATE
        self._next = position

    def _resample(self, pcm: np.ndarray) -> np.ndarray:
        rate = self._rate()  # a session.update may change the input format mid-call
        resampler = self._resampler
        if resampler is None or resampler.out_rate != rate:
            resampler = self._resampler = StreamResampler(RATE, rate)
        self._held = True
        return resampler.process(pcm)

    def _emit(self, pcm: np.ndarray) -> None:
        if len(pcm):
            self._deliver(pcm)


def _packet(payload: bytes, position: int) -> Packet:
    packet = Packet(payload)
    packet.pts = position
    packet.time_base = _TIME_BASE
    return packet


class _Ticker:
    """One timer for every call of the process: fills the silence of callers who send
    nothing. It runs only while some call's audio is live."""

    def __init__(self) -> None:
        self._streams: weakref.WeakSet[InboundAudio] = weakref.WeakSet()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, stream: InboundAudio) -> None:
        self._streams.add(stream)
        loop = asyncio.get_running_loop()
        if self._timer is None or self._loop is not loop:  # a new loop: tests run several
            self._loop = loop
            self._timer = loop.call_later(FILL_TICK_S, self._tick)

    def discard(self, stream: InboundAudio) -> None:
        self._streams.discard(stream)

    def _tick(self) -> None:
        self._timer = None
        now = time.monotonic()
        for stream in list(self._streams):
            try:
                stream.fill_to_now(now)
            except Exception:  # one call's fault must not stop the others' silence
                log.exception("could not fill a caller's silence")
                self._streams.discard(stream)
        if self._streams and self._loop is not None:
            self._timer = self._loop.call_later(FILL_TICK_S, self._tick)


_ticker = _Ticker()
