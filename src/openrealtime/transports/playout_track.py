"""The outgoing audio track of a WebRTC call: the playout's 20 ms frames, Opus-encoded here and
handed to aiortc as packets, paced in real time. While nothing plays, it sends nothing.

Why not let aiortc encode: its sender hands each frame to a thread pool (a thread hop per
frame), upmixes to stereo, encodes at 96 kb/s and measures the audio level in a Python loop
over every sample — ~0.5 ms of CPU per 20 ms frame. Here one mono encoder per call runs inline
(~0.12 ms at complexity 5), and the sender only packs what `recv()` returns (`av.Packet`).

Why pause: an idle call would otherwise encode, encrypt and send 50 packets of silence a
second. When the playout has had nothing to play for `HANGOVER_FRAMES` frames, `recv()` waits
until audio arrives, so the sender's loop (encode, SRTP, sendto) stops with it. The RTP clock
goes on meanwhile: on resume the timestamps jump by the pause, rounded to whole frames, as after
Opus DTX, so a receiver's jitter buffer sees the gap for what it is. The hangover lets the
encoder's lookahead and a receiver's prefetch (aiortc holds 4 frames back) drain the end of
the answer before the stream goes quiet.
"""

from __future__ import annotations

import asyncio
import fractions
import time

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, CodecContext, Packet
from av.audio.codeccontext import AudioCodecContext

from .playout import Playout

OPUS_BITRATE = 32000  # mono speech: transparent enough, a third of aiortc's stereo default
# libopus complexity (0 to 10): 5 takes about half the CPU of 10 on speech; libwebrtc itself
# runs lower complexities on weak devices.
OPUS_COMPLEXITY = 5


def opus_encoder(rate: int) -> AudioCodecContext:
    codec = CodecContext.create("libopus", "w")
    assert isinstance(codec, AudioCodecContext)
    codec.bit_rate = OPUS_BITRATE
    codec.format = "s16"
    codec.layout = "mono"
    codec.sample_rate = rate
    codec.time_base = fractions.Fraction(1, rate)
    codec.options = {"application": "audio", "compression_level": str(OPUS_COMPLEXITY)}
    return codec


class PlayoutTrack(MediaStreamTrack):
    """One Opus packet of the playout per `recv()`; see the module's docstring."""

    kind = "audio"
    # Behind by more than this (a stalled loop), playback restarts its clock rather than
    # bursting the missed frames into the client's jitter buffer.
    MAX_LAG_S = 0.1
    HANGOVER_FRAMES = 15  # 300 ms of silence after the last sound, then the stream pauses

    def __init__(self, playout: Playout) -> None:
        super().__init__()
        self._playout = playout
        self._time_base = fractions.Fraction(1, playout.rate)
        self._encoder = opus_encoder(playout.rate)
        self._start: float | None = None
        self._pts = 0
        self._quiet = 0  # frames sent since the playout last had something to play
        self._wake = asyncio.Event()
        playout.on_audio = self._wake.set
        self.pauses = 0  # how often the stream went quiet (for tests and logs)

    def stop(self) -> None:
        super().stop()
        self._wake.set()  # a paused recv() ends too

    async def recv(self) -> Packet:  # aiortc's sender takes frames or encoded packets
        playout, frame_samples = self._playout, self._playout.frame_samples
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            now = time.monotonic()
            if self._start is None:
                self._start = now
            elif self._quiet >= self.HANGOVER_FRAMES and playout.idle:
                await self._paused()
                if self.readyState != "live":
                    raise MediaStreamError
            else:
                self._pts += frame_samples
                wait = self._start + self._pts / playout.rate - now
                if wait > 0:
                    await asyncio.sleep(wait)
                elif wait < -self.MAX_LAG_S:
                    self._start = now - self._pts / playout.rate
            samples = playout.next_frame()
            self._quiet = self._quiet + 1 if playout.idle else 0
            frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = playout.rate
            frame.pts = self._pts
            frame.time_base = self._time_base
            packets = self._encoder.encode(frame)
            if packets:  # libopus gives one per 20 ms frame, from the first
                packet = packets[0]
                packet.pts = self._pts
                packet.time_base = self._time_base
                return packet

    async def _paused(self) -> None:
        """Wait for audio; then carry the stream's clock over the pause, so that the frame to
        send next is due now."""
        playout = self._playout
        self.pauses += 1
        while playout.idle and self.readyState == "live":
            self._wake.clear()
            await self._wake.wait()
        self._quiet = 0
        assert self._start is not None
        now = time.monotonic()
        paused = now - (self._start + self._pts / playout.rate)
        frames = max(1, round(paused * playout.rate / playout.frame_samples))
        self._pts += frames * playout.frame_samples
        self._start = now - self._pts / playout.rate
