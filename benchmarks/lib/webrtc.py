"""A WebRTC client made as a browser makes it, with aiortc: a peer with the `oai-events` data
channel and a microphone track, an SDP offer POSTed to `/v1/realtime/calls`, the answer set.
It records what comes back: every event on the data channel and every frame of the server's
audio track. The tests subclass it to validate every event strictly (tests/webrtc_client.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import functools
import time
from collections import deque
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import orjson
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, Packet

RATE = 48000
FRAME = 960  # 20 ms


class Microphone(MediaStreamTrack):
    """Plays what it is given (48 kHz mono int16), then silence; paced in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[np.ndarray] = deque()
        self._start: float | None = None
        self._pts = 0
        self.done = asyncio.Event()  # set when everything queued has been sent

    def play(self, pcm: np.ndarray) -> None:
        self.done.clear()
        for start in range(0, len(pcm), FRAME):
            chunk = np.zeros(FRAME, np.int16)
            piece = pcm[start : start + FRAME]
            chunk[: len(piece)] = piece
            self._queue.append(chunk)

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._pts += FRAME
            wait = self._start + self._pts / RATE - now
            if wait > 0:
                await asyncio.sleep(wait)
        if self._queue:
            samples = self._queue.popleft()
        else:
            samples = np.zeros(FRAME, np.int16)
            self.done.set()
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


def encode_opus(pcm: np.ndarray) -> list[bytes]:
    """48 kHz mono int16 as 20 ms Opus packets (the server's own encoder settings)."""
    from openrealtime.transports.playout_track import opus_encoder  # a server's code from 39482c0

    encoder = opus_encoder(RATE)
    padded = np.zeros(-(-len(pcm) // FRAME) * FRAME, np.int16)
    padded[: len(pcm)] = pcm
    packets: list[bytes] = []
    for pts in range(0, len(padded), FRAME):
        frame = AudioFrame.from_ndarray(
            padded[pts : pts + FRAME].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = RATE, pts
        frame.time_base = fractions.Fraction(1, RATE)
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets


@functools.cache
def silent_packet() -> bytes:
    return encode_opus(np.zeros(10 * FRAME, np.int16))[-1]


DTX_HANGOVER_FRAMES = 10  # silent frames sent at the full rate before DTX sets in (libopus)
DTX_INTERVAL_FRAMES = 20  # then one packet per 400 ms, as libwebrtc sends with usedtx=1


class PacketMicrophone(MediaStreamTrack):
    """A microphone for load: it sends speech encoded once (`encode_opus`), shared by every
    call, and a canned silent packet in between; so the load generator does not pay an Opus
    encoder per call. In silence it sends as a browser does: 50 packets a second, or, when
    the answer asked for Opus DTX (`dtx`, set by `CallClient.accept`), 200 ms of silent
    packets and then one every 400 ms, the RTP timestamps jumping over the gaps.
    `speech_end` is when the last packet of what it was given left."""

    kind = "audio"

    def __init__(self, allow_dtx: bool = True) -> None:
        super().__init__()
        self.allow_dtx = allow_dtx  # False: a browser without DTX, whatever the answer asks
        self.dtx = False
        self._queue: deque[bytes] = deque()
        self._start: float | None = None
        self._pts = 0
        self._quiet = 0  # silent packets sent since the last speech
        self._wake = asyncio.Event()
        self.speech_end: float | None = None
        self.done = asyncio.Event()
        self.sent = 0  # packets, for the load generator's own figures

    def play(self, packets: list[bytes]) -> None:
        self.done.clear()
        self.speech_end = None
        self._queue.extend(packets)
        self._wake.set()

    async def recv(self) -> Packet:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        elif self.dtx and not self._queue and self._quiet >= DTX_HANGOVER_FRAMES:
            await self._dtx_pause(now)
        else:
            self._pts += FRAME
            wait = self._start + self._pts / RATE - now
            if wait > 0:
                await asyncio.sleep(wait)
        if self._queue:
            packet = Packet(self._queue.popleft())
            self._quiet = 0
            if not self._queue:
                self.speech_end = time.monotonic()
                self.done.set()
        else:
            packet = Packet(silent_packet())
            self._quiet += 1
        packet.pts = self._pts
        packet.time_base = fractions.Fraction(1, RATE)
        self.sent += 1
        return packet

    async def _dtx_pause(self, now: float) -> None:
        """Until the next comfort-noise packet is due, or speech comes; the stream's clock
        goes on meanwhile, in whole frames."""
        assert self._start is not None
        self._wake.clear()
        due = self._start + (self._pts + DTX_INTERVAL_FRAMES * FRAME) / RATE
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.0, due - now))
        frames = round((time.monotonic() - self._start) * RATE / FRAME)
        self._pts = max(self._pts + FRAME, frames * FRAME)


def answers_opus_dtx(sdp: str) -> bool:
    """The answer asks us for Opus DTX: `usedtx=1` on an Opus payload type's fmtp."""
    opus = {
        line.split(":", 1)[1].split()[0]
        for line in sdp.splitlines()
        if line.lower().startswith("a=rtpmap:") and " opus/" in line.lower()
    }
    return any(
        line.startswith(f"a=fmtp:{pt} ") and "usedtx=1" in line
        for line in sdp.splitlines()
        for pt in opus
    )


class InlineAudio:
    """For load (`CallClient(lean_audio=True)`): the server's audio decoded inline as each
    packet comes, in place of the client receiver's jitter buffer and decoder thread, as the
    server does with the caller's audio (`transports/inbound_audio.py`): one client process
    then carries more calls. Frames are recorded as `CallClient._read_audio` records them."""

    def __init__(self, frames: list[tuple[float, int, np.ndarray]]) -> None:
        from openrealtime.transports.inbound_audio import opus_decoder

        self._frames = frames
        self._decoder = opus_decoder()
        self._origin: int | None = None

    def add(self, packet: Any) -> tuple[bool, None]:
        if self._origin is None:
            self._origin = packet.timestamp
        pts = (packet.timestamp - self._origin) % (1 << 32)
        if packet._data:
            for frame in self._decoder.decode(Packet(packet._data)):
                samples = np.frombuffer(memoryview(frame.planes[0]), np.int16, frame.samples)
                self._frames.append((time.monotonic(), pts, samples))
                pts += frame.samples
        return False, None


class CallClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        audio: bool = True,
        microphone: MediaStreamTrack | None = None,
        lean_audio: bool = False,
    ) -> None:
        self.base_url = base_url
        self.lean_audio = lean_audio
        self.api_key = api_key
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("oai-events")
        self.microphone: Any = microphone or Microphone()
        if audio:
            self.pc.addTrack(self.microphone)
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.raw_events: list[str] = []
        self.arrivals: list[tuple[float, str]] = []  # (when, type) of every event received
        # (arrival time, pts, mono int16 samples) of every frame of the server's audio; the pts
        # counts samples of the server's stream, so it does not depend on when frames arrive
        self.frames: list[tuple[float, int, np.ndarray]] = []
        self.call_id: str | None = None
        self.response: httpx.Response | None = None
        self._opened = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.channel.on("open", self._opened.set)
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, response: httpx.Response) -> None:
        """Take the server's answer to our offer (201, application/sdp)."""
        self.response = response
        assert response.status_code == 201, response.text
        assert response.headers["content-type"].startswith("application/sdp")
        self.call_id = response.headers["location"].rsplit("/", 1)[1]
        if isinstance(self.microphone, PacketMicrophone):  # a browser's Opus DTX, if asked
            self.microphone.dtx = self.microphone.allow_dtx and answers_opus_dtx(response.text)
        await self.pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
        if self.lean_audio:
            from openrealtime.transports.webrtc import take_receive_path

            for transceiver in self.pc.getTransceivers():
                if transceiver.kind == "audio":
                    take_receive_path(transceiver.receiver, InlineAudio(self.frames))

    async def connect(self, session: dict[str, Any] | None = None) -> None:
        """Offer, POST it (as multipart with `session`, else as application/sdp), answer."""
        offer = await self.offer()
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=20) as http:
            if session is None:
                headers["Content-Type"] = "application/sdp"
                response = await http.post("/v1/realtime/calls", content=offer, headers=headers)
            else:
                response = await http.post(
                    "/v1/realtime/calls",
                    files={
                        "sdp": (None, offer, "application/sdp"),
                        "session": (None, orjson.dumps(session), "application/json"),
                    },
                    headers=headers,
                )
        await self.accept(response)
        await asyncio.wait_for(self._opened.wait(), 10)

    def parse(self, message: str) -> Any:
        """An event as the client keeps it: here its fields as attributes (`event.type`)."""
        return SimpleNamespace(**orjson.loads(message))

    def _on_message(self, message: str | bytes) -> None:
        assert isinstance(message, str)
        self.raw_events.append(message)
        event = self.parse(message)
        self.arrivals.append((time.monotonic(), event.type))
        self.events.put_nowait(event)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self._read_audio(track)))

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                assert isinstance(frame, AudioFrame)
                samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
                self.frames.append((time.monotonic(), frame.pts or 0, samples.astype(np.int16)))
        except MediaStreamError:
            return

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(orjson.dumps(event).decode())

    async def recv(self, timeout: float = 10) -> Any:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def until(self, event_type: str, timeout: float = 20, limit: int = 5000) -> list[Any]:
        """Events (parsed) up to and including the first of `event_type`."""
        events: list[Any] = []
        deadline = time.monotonic() + timeout
        for _ in range(limit):
            left = deadline - time.monotonic()
            try:
                event = await asyncio.wait_for(self.events.get(), max(left, 0.001))
            except TimeoutError:
                break
            events.append(event)
            if event.type == event_type:
                return events
        raise AssertionError(f"no {event_type} in {timeout} s: {[e.type for e in events]}")

    def audio_since(self, since: float) -> np.ndarray:
        return self.audio_between(since, float("inf"))

    def audio_between(self, start: float, end: float) -> np.ndarray:
        """The server's audio that arrived between two `time.monotonic()` instants."""
        chunks = [samples for at, _, samples in self.frames if start <= at < end]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    def stream(self) -> np.ndarray:
        """The server's audio laid out by pts (in the server's own stream time, gaps as
        silence): where in the stream something played, however late it arrived."""
        if not self.frames:
            return np.zeros(0, np.int16)
        first = min(pts for _, pts, _ in self.frames)
        end = max(pts + len(samples) for _, pts, samples in self.frames)
        out = np.zeros(end - first, np.int16)
        for _, pts, samples in self.frames:
            out[pts - first : pts - first + len(samples)] = samples
        return out

    async def close(self) -> None:
        self.microphone.stop()
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
