"""The SIP transport: a phone call, answered through `POST /v1/realtime/calls/{id}/accept`,
feeding one driver, shaped like the WebRTC peer (transports/webrtc.py). The SIP stack itself is
behind transports/sip_stack.py.

- Audio in: the caller's G.711 (8 kHz), decoded, resampled to the session's input format and
  appended to the session's buffer.
- Audio out: the driver's audio deltas go to a `Playout` at 8 kHz; a pacer sends one 20 ms
  G.711 packet of it every 20 ms, silence included (trunks and NATs expect a steady stream).
  The playout sends `output_audio_buffer.*` and reports the playback position, so a barge-in
  truncates the answer where the caller stopped hearing it.
- Events: a call has no data channel; a sideband WebSocket (`/v1/realtime?call_id=`) sees them.
- DTMF (RFC 4733): one `input_audio_buffer.dtmf_event_received` per key press.

The call ends when the caller hangs up (BYE), when it is hung up here (`hang_up`, a BYE goes
out), or when the server ends it (`close_with`: the error event goes to the sidebands first).
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from ..audio import formats
from ..audio.resample import StreamResampler
from ..runtime.driver import SessionDriver
from .ending import Close
from .playout import Playout
from .sip_stack import RtpLink, SipInvite

log = logging.getLogger(__name__)

RATE = 8000  # G.711's clock
FRAME_SAMPLES = 160  # 20 ms, the usual telephony packet
# Behind by more than this (a stalled loop), the pacer restarts its clock rather than
# bursting the missed packets at the caller.
MAX_LAG_S = 0.1
DTMF_EVENT = "input_audio_buffer.dtmf_event_received"


class SipPeer:
    """One answered call. `run()` until it ends."""

    def __init__(
        self, driver: SessionDriver, invite: SipInvite, link: RtpLink, name: str = ""
    ) -> None:
        self.driver = driver
        self.invite = invite
        self.link = link
        self.name = name
        self.playout = Playout(emit=driver.emit, on_position=driver.playback, rate=RATE)
        self._resampler: StreamResampler | None = None
        self._ended = asyncio.Event()
        self.packets_sent = 0
        # From now on, not from `run()`: the caller's BYE may come before the call's task runs.
        invite.on_end = self._ended.set
        if invite.ended:
            self._ended.set()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def hang_up(self) -> None:
        self._ended.set()

    def close_with(self, close: Close) -> None:
        """End the call from the server: the error event (to any sideband), then BYE."""
        self.driver.reject(close.error)
        self._ended.set()

    async def close(self) -> None:
        """Free a call that was never `run()`."""
        self._ended.set()
        self.invite.hang_up()
        await self.link.close()

    async def run(self) -> None:
        driver, link = self.driver, self.link
        driver.add_sink(self.playout.take)
        driver.player = self.playout
        link.on_audio = self._audio_in
        link.on_dtmf = self._dtmf
        pacer: asyncio.Task[None] | None = None
        try:
            driver.start()
            pacer = asyncio.get_running_loop().create_task(
                self._pace(), name=f"{self.name} audio out"
            )
            await self._ended.wait()
        finally:
            link.on_audio = link.on_dtmf = _ignore
            driver.remove_sink(self.playout.take)
            driver.player = None
            if pacer is not None:
                pacer.cancel()
                await asyncio.gather(pacer, return_exceptions=True)
            self.invite.hang_up()  # BYE, unless the caller already sent one
            try:
                await link.close()
            finally:
                await driver.close()
                log.info("call %s ended", self.name)

    # --- audio ---------------------------------------------------------------------------------

    def _audio_in(self, pcm: bytes) -> None:
        fmt = self.driver.input_format  # a session.update may change it mid-call
        out_rate = formats.sample_rate(fmt)
        resampler = self._resampler
        if resampler is None or resampler.out_rate != out_rate:
            resampler = self._resampler = StreamResampler(RATE, out_rate)
        samples = np.frombuffer(pcm, dtype="<i2")
        out = resampler.process(samples)
        if len(out):
            self.driver.append_audio(formats.encode(fmt, out))

    async def _pace(self) -> None:
        playout, link = self.playout, self.link
        start, sent, timestamp = time.monotonic(), 0, 0
        while True:
            wait = start + sent * FRAME_SAMPLES / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -MAX_LAG_S:
                start, sent = time.monotonic(), 0
            samples = playout.next_frame()
            link.send(formats.encode(link.format, samples), timestamp)
            sent += 1
            self.packets_sent += 1
            timestamp = (timestamp + FRAME_SAMPLES) & 0xFFFFFFFF

    def _dtmf(self, digit: str) -> None:
        self.driver.emit({"type": DTMF_EVENT, "event": digit, "received_at": int(time.time())})


def _ignore(_: object) -> None:
    pass
