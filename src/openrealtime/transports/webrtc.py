"""The WebRTC transport (`POST /v1/realtime/calls`): one aiortc peer per call, feeding one
driver. Thin by design, like the WebSocket transport — the session core holds every rule, the
driver runs the work:

- Audio in: the caller's Opus packets are decoded on the loop as they come
  (`inbound_audio.py`, in place of aiortc's jitter buffer and decoder thread), resampled to
  the session's input format and appended to the session's buffer. Our SDP answer asks the
  caller for Opus DTX (`usedtx=1`): a browser then sends a few packets a second in silence,
  not 50, and the gaps are appended as silence, so turns still end.
- Audio out: the driver's audio deltas go to a `Playout`, which a real-time-paced outgoing
  track (`playout_track.py`) plays as 20 ms 48 kHz Opus packets, and pauses while nothing
  plays. The playout sends
  `output_audio_buffer.*` and reports the playback position, so a barge-in truncates the
  answer where the user stopped hearing it.
- Events: the `oai-events` data channel (the client opens it) carries the same JSON as the
  WebSocket, GA dialect, except the audio deltas: audio goes over the media track only.
  `session.created` is queued when the call starts and sent as the channel opens.

The peer is the same for a translation call (`POST /v1/realtime/translations/calls`): what
differs is the session behind it, as a `CallMedia` (`VoiceMedia` here; transports/translation.py
`TranslationMedia`): how the track's audio is appended, how the session's audio reaches the
playout, and which event carries audio (kept off the data channel).

The peer owns its session: when it is hung up, its connection fails or closes, or its audio
track ends, the session's backend work stops and the peer is closed. When the server ends it
(`close_with`: the session's age limit, a shutdown), the `error` event goes out on the data
channel first, and the peer hangs up once the channel has sent it (or after FLUSH_TIMEOUT_S).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from ..audio import formats
from ..protocol import errors
from ..protocol.errors import ProtocolError
from ..protocol.server_events import AUDIO_DELTA, ServerEvent
from ..runtime.driver import SessionDriver
from .dialect import GA, Dialect
from .ending import Close
from .inbound_audio import InboundAudio
from .playout import Playout
from .playout_track import PlayoutTrack
from .websocket import EventSource

log = logging.getLogger(__name__)

DATA_CHANNEL = "oai-events"
RATE = 48000  # WebRTC's Opus clock
# A peer that has not connected by then never will (ICE gives up sooner on its own).
CONNECT_TIMEOUT_S = 30.0
# Events held for a data channel that has not opened yet; past this, the client is not
# reading them anyway.
MAX_PENDING_EVENTS = 10_000
# Ending a call from the server: how long its last events get to leave on the data channel.
FLUSH_TIMEOUT_S = 1.0


class CallDriver(EventSource, Protocol):
    """The driver a peer owns: a voice session's or a translation session's."""

    def start(self) -> None: ...

    async def close(self) -> None: ...


class CallMedia(Protocol):
    """How a call's audio meets its session."""

    audio_delta: str  # the event type whose audio goes on the track, not the data channel

    def input_rate(self) -> int: ...

    def append(self, pcm: np.ndarray) -> None:
        """The caller's audio, mono int16 at `input_rate()`."""

    def new_playout(self) -> Playout: ...

    def play_into(self, playout: Playout | None) -> None:
        """Send the session's audio to `playout` from now on; None: no longer."""


class VoiceMedia:
    """A voice session's: its input format, its audio deltas, barge-in through the player."""

    audio_delta = AUDIO_DELTA

    def __init__(self, driver: SessionDriver) -> None:
        self._driver = driver
        self._sink: Callable[[ServerEvent], None] | None = None

    def input_rate(self) -> int:
        return formats.sample_rate(self._driver.input_format)  # session.update may change it

    def append(self, pcm: np.ndarray) -> None:
        self._driver.append_audio(formats.encode(self._driver.input_format, pcm))

    def new_playout(self) -> Playout:
        return Playout(emit=self._driver.emit, on_position=self._driver.playback)

    def play_into(self, playout: Playout | None) -> None:
        if self._sink is not None:
            self._driver.remove_sink(self._sink)
            self._sink = None
        if playout is not None:
            self._sink = playout.take
            self._driver.add_sink(self._sink)
        self._driver.player = playout


D = TypeVar("D", bound=CallDriver)


class WebRtcPeer(Generic[D]):
    """One call's peer connection. `answer()` the offer, then `run()` until the call ends."""

    def __init__(
        self,
        driver: D,
        media: CallMedia,
        dialect: Dialect | None = None,
        name: str = "",
    ) -> None:
        self.driver = driver
        self.media = media
        self.dialect = dialect or GA()
        self.name = name  # for logs and task names
        # No STUN or TURN: a server is reached at its own addresses (host candidates).
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.playout = media.new_playout()
        self._track = PlayoutTrack(self.playout)
        self._plays = False  # the offer has an audio section to send the answer in
        self._offered_tracks: list[MediaStreamTrack] = []
        self._remote_audio: MediaStreamTrack | None = None
        self._inbound: InboundAudio | None = None
        self._channel: RTCDataChannel | None = None
        self._pending: list[str] | None = []  # None: no channel will take them
        self._connected = False
        self._ended = asyncio.Event()
        self._closing = False  # the server ends the call: flush the data channel first
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def answer(self, offer_sdp: str) -> str:
        """The SDP answer to the client's offer, with every ICE candidate gathered in it.
        Raises (ValueError, mostly) on an offer aiortc cannot parse or answer."""
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        transceivers = self.pc.getTransceivers()
        audio = next((t for t in transceivers if t.kind == "audio"), None)
        for transceiver in transceivers:
            if transceiver is not audio:
                # Answered `inactive` (video, a second audio section): no packets come, so
                # none pile up unread.
                transceiver.direction = "inactive"
        if audio is not None:
            self.pc.addTrack(self._track)  # joins the offer's audio section
            self._plays = True
            # Opus only: the caller's packets are decoded as Opus (`InboundAudio`), and every
            # browser offers it. aiortc has set the section's common codecs by now (private:
            # `setCodecPreferences` comes too late for an answer); an offer without Opus is
            # refused.
            opus = [c for c in audio._codecs if _is_opus(c)]
            if not opus:
                raise ValueError("the offer's audio section has no Opus codec")
            audio._codecs = opus
            if audio.receiver.track in self._offered_tracks:  # the client sends audio
                self._remote_audio = audio.receiver.track
                self._inbound = InboundAudio(self.media.append, self.media.input_rate)
                take_receive_path(audio.receiver, self._inbound)
        if "m=application" not in offer_sdp:
            self._pending = None  # audio only: no data channel will come
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return with_opus_dtx(self.pc.localDescription.sdp)

    def hang_up(self, flush: bool = False) -> None:
        """End the call; `flush`: once the data channel has sent what it holds."""
        self._closing = self._closing or flush
        self._ended.set()

    def close_with(self, close: Close) -> None:
        """End the call from the server: the error event (to the data channel and any
        sideband), then hang up. WebRTC has no close code: `close.code` is not used."""
        self._closing = True
        self.driver.reject(close.error)
        self._ended.set()

    async def close(self) -> None:
        """Free a peer that was never `run()` (its offer was refused)."""
        self._ended.set()
        self._track.stop()
        await self.pc.close()

    async def run(self) -> None:
        """Pump the call until it ends, then free everything it holds."""
        driver = self.driver
        driver.add_sink(self._send)
        if self._plays:
            self.media.play_into(self.playout)
        loop = asyncio.get_running_loop()
        watchdog = loop.call_later(CONNECT_TIMEOUT_S, self._connect_timeout)
        pump: asyncio.Task[None] | None = None
        try:
            driver.start()
            if self._remote_audio is not None and self._inbound is not None:
                self._inbound.start()
                pump = loop.create_task(
                    self._await_track_end(self._remote_audio), name=f"{self.name} audio in"
                )
            await self._ended.wait()
        finally:
            watchdog.cancel()
            inbound = self._inbound
            if inbound is not None:
                inbound.stop()
                log.info(
                    "call %s: audio in: %d packets, %.1f s of silence filled (DTX, losses), "
                    "%.2f s stretched for late packets, %d reordered packets dropped",
                    self.name,
                    inbound.packets,
                    inbound.filled_s,
                    inbound.stretched_s,
                    inbound.dropped,
                )
            driver.remove_sink(self._send)
            self.media.play_into(None)
            if pump is not None:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
            if self._closing:
                await self._flush_channel()
            self._track.stop()
            try:
                await self.pc.close()
            finally:
                await driver.close()
                log.info("call %s ended", self.name)

    # --- the peer's events ---------------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._offered_tracks.append(track)  # fired inside setRemoteDescription

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        log.debug("call %s connection %s", self.name, state)
        if state == "connected":
            self._connected = True
        elif state in ("failed", "closed"):
            self._ended.set()

    def _connect_timeout(self) -> None:
        if not self._connected:
            log.info("call %s: the peer did not connect in %.0f s", self.name, CONNECT_TIMEOUT_S)
            self._ended.set()

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != DATA_CHANNEL or self._channel is not None:
            log.info("call %s: ignoring data channel %r", self.name, channel.label)
            return
        self._channel = channel
        channel.on("message", self._on_message)
        channel.on("close", self._on_channel_close)
        if channel.readyState == "open":
            self._flush_pending()
        else:
            channel.on("open", self._flush_pending)

    def _flush_pending(self) -> None:
        channel, pending = self._channel, self._pending
        if channel is None or pending is None:
            return
        self._pending = None
        for text in pending:
            channel.send(text)

    async def _flush_channel(self) -> None:
        """Wait (bounded) until the data channel has handed what it holds to the wire."""
        channel, loop = self._channel, asyncio.get_running_loop()
        deadline = loop.time() + FLUSH_TIMEOUT_S
        while (
            channel is not None
            and channel.readyState == "open"
            and channel.bufferedAmount > 0
            and loop.time() < deadline
        ):
            await asyncio.sleep(0.02)

    def _on_channel_close(self) -> None:
        # The call goes on (audio still flows, a sideband may still control it); events
        # for this channel are no longer kept.
        self._channel = None
        self._pending = None

    def _on_message(self, message: str | bytes) -> None:
        """One data-channel message. Whatever it holds, it ends as an event applied or an
        `error` event: an exception here would be raised into aiortc's channel machinery."""
        if not isinstance(message, str):
            self.driver.reject(
                ProtocolError(
                    "Binary messages are not supported; send each event as a JSON text message.",
                    errors.BINARY_FRAME,
                )
            )
            return
        try:
            event = self.dialect.parse(message)
        except ProtocolError as error:
            self.driver.reject(error)
            return
        except Exception:  # input no rule foresaw must not end the session
            log.exception("call %s: could not parse a client event", self.name)
            self.driver.reject(
                ProtocolError(
                    "The event could not be parsed; check that it is a valid client event.",
                    errors.INVALID_EVENT,
                )
            )
            return
        try:
            self.driver.receive(event)
        except Exception:
            log.exception("call %s: could not apply a %s event", self.name, event.type)
            self.driver.reject(
                ProtocolError(
                    f"The {event.type} event could not be applied.",
                    errors.INVALID_EVENT,
                    type=errors.SERVER_ERROR,
                    event_id=event.event_id,
                )
            )

    # --- events out ----------------------------------------------------------------------------

    def _send(self, event: ServerEvent) -> None:
        """The driver's sink: every event but audio, on the data channel."""
        if event["type"] == self.media.audio_delta:
            return
        text = self.dialect.encode(event)
        if text is None:
            return
        channel = self._channel
        if channel is not None and channel.readyState == "open" and self._pending is None:
            channel.send(text)  # queues in SCTP; never blocks
        elif self._pending is not None:
            self._pending.append(text)
            if len(self._pending) > MAX_PENDING_EVENTS:
                log.warning("call %s: the data channel never opened; events dropped", self.name)
                self._pending = None

    # --- audio in ---------------------------------------------------------------------------

    async def _await_track_end(self, track: MediaStreamTrack) -> None:
        """The caller's audio comes through `InboundAudio`; the track only tells when it ends
        (the receiver stops: the peer hung up or the connection closed)."""
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                break
        log.info("call %s: the remote audio track ended", self.name)
        self._ended.set()


def take_receive_path(receiver: Any, inbound: InboundAudio) -> None:
    """Put `inbound` in place of the receiver's audio jitter buffer: every RTP packet goes to
    `inbound.add`, and aiortc's decoder thread gets nothing to do (it waits, costing nothing).
    The attribute is private to aiortc (the same since its early versions); if it moves, this
    raises and the offer is refused, and tests/test_webrtc.py fails."""
    attribute = "_RTCRtpReceiver__jitter_buffer"
    if not hasattr(receiver, attribute):
        raise RuntimeError("this aiortc has no audio jitter buffer to replace")
    setattr(receiver, attribute, inbound)


def _is_opus(codec: Any) -> bool:
    return str(codec.mimeType).lower() == "audio/opus"


_OPUS_RTPMAP = re.compile(r"^a=rtpmap:(\d+) opus/48000", re.IGNORECASE | re.MULTILINE)


def with_opus_dtx(sdp: str) -> str:
    """The answer with `usedtx=1` on its Opus payload types: the caller's encoder may then
    stop sending in silence (RFC 7587 6.1). aiortc writes no fmtp for Opus; if one is there,
    the parameter is added to it."""
    for payload_type in _OPUS_RTPMAP.findall(sdp):
        fmtp = re.compile(rf"^a=fmtp:{payload_type} ([^\r\n]*)", re.MULTILINE)
        match = fmtp.search(sdp)
        if match is None:
            rtpmap = re.compile(rf"^(a=rtpmap:{payload_type} opus/48000\S*)(\r?\n)", re.M | re.I)
            sdp = rtpmap.sub(rf"\1\2a=fmtp:{payload_type} usedtx=1\2", sdp, count=1)
        elif "usedtx" not in match.group(1):
            sdp = sdp[: match.end(1)] + ";usedtx=1" + sdp[match.end(1) :]
    return sdp
