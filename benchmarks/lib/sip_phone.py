"""A phone for the SIP tests and benchmarks, built on the server's own stack (aiosipua +
aiortp): it calls over UDP or TCP on loopback, plays G.711 μ-law paced in real time, records
what comes back, presses keys (RFC 4733) and answers REFER and BYE."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import numpy as np
from aiortp import RTPSession
from aiosipua import SipUAC, parse_sdp
from aiosipua.transport import SipTransport, TcpSipTransport
from aiosipua.uas import SipUAS

from openrealtime.audio import g711
from openrealtime.transports.sip_stack import UdpTransport

RATE = 8000
FRAME = 160  # 20 ms


def free_sip_port() -> int:
    """A port free for UDP and for TCP: a SIP server listens on both with the one number, and
    a port the system just gave out for UDP may be a live TCP connection's local port."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


class Phone:
    """One outgoing call to `server` (host, port) over `transport` ("udp" or "tcp")."""

    def __init__(self, server: tuple[str, int], transport: str = "udp") -> None:
        self.server = server
        self.kind = transport
        self.heard: list[tuple[float, np.ndarray]] = []  # (arrival time, samples)
        self.referred_to: str | None = None
        self.responses: list[tuple[int, str, int]] = []  # (CSeq, method, status) received
        self.hung_up_by_server = asyncio.Event()
        self.rtp: RTPSession | None = None
        self.call: Any = None
        self._uas: SipUAS | None = None
        self._uac: SipUAC | None = None
        self._player: asyncio.Task[None] | None = None
        self._rtp_port = free_sip_port()
        self._presses = 0

    async def dial(self, headers: dict[str, str] | None = None) -> None:
        """Send the INVITE (it rings until the server answers or refuses)."""
        sip: SipTransport
        if self.kind == "udp":
            sip = UdpTransport(local_addr=("127.0.0.1", free_sip_port()))
        else:
            sip = TcpSipTransport(local_addr=("127.0.0.1", free_sip_port()))
        self._uac = SipUAC(sip)
        self._uas = SipUAS(sip, uac=self._uac)
        self._uas.on_bye = lambda _call, _request: self.hung_up_by_server.set()
        self._uas.on_refer = self._on_refer
        handle = self._uac.handle_response

        def record(response: Any, addr: tuple[str, int]) -> None:
            cseq = response.cseq
            self.responses.append((cseq.seq, cseq.method, response.status_code))
            handle(response, addr)

        self._uac.handle_response = record  # type: ignore[method-assign]
        await self._uas.start()
        if isinstance(sip, TcpSipTransport):
            await sip.connect(self.server)
        offer = parse_sdp(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self._rtp_port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            "a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
        )
        self.call = self._uac.send_invite(
            "sip:+14155550100@127.0.0.1",
            f"sip:agent@{self.server[0]}:{self.server[1]}",
            self.server,
            offer,
            extra_headers={"X-Customer-Id": "c-42 ; tier=gold", **(headers or {})},
        )

    async def answered(self, timeout: float = 10) -> None:
        """Wait for the 200 OK, then start RTP towards the answer's address."""
        await self.call.wait_answered(timeout)
        answer = self.call.sdp_answer
        assert answer is not None and answer.rtp_address is not None
        self.rtp = await RTPSession.create(
            local_addr=("127.0.0.1", self._rtp_port),
            remote_addr=answer.rtp_address,
            payload_type=0,
            skip_audio_gaps=True,
            plc=False,
        )
        self.rtp.on_audio = lambda pcm, _ts: self.heard.append(
            (time.monotonic(), np.frombuffer(pcm, "<i2").copy())
        )

    async def refused(self, timeout: float = 10) -> int:
        """The final failure status the server answered the INVITE with."""
        try:
            await self.call.wait_answered(timeout)
        except RuntimeError:
            return int(self.call._reject_code)
        raise AssertionError("the call was answered")

    def play(self, samples: np.ndarray) -> None:
        """Send 8 kHz samples as μ-law RTP, paced in real time (in the background)."""
        self._player = asyncio.get_running_loop().create_task(self._play(samples))

    async def _play(self, samples: np.ndarray) -> None:
        assert self.rtp is not None
        start, timestamp = time.monotonic(), 0
        for n, at in enumerate(range(0, len(samples) - FRAME + 1, FRAME)):
            self.rtp.send_audio(g711.ulaw_encode(samples[at : at + FRAME]), timestamp)
            timestamp += FRAME
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))

    async def played(self) -> None:
        if self._player is not None:
            await self._player

    def press(self, digit: str) -> None:
        assert self.rtp is not None
        # RFC 4733: a new key press is a new RTP timestamp (the receiver tells them apart so).
        self._presses += 1
        self.rtp.send_dtmf(digit, 160, timestamp=self._presses * RATE)

    def audio_since(self, moment: float) -> np.ndarray:
        chunks = [samples for at, samples in self.heard if at >= moment]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    def reinvite(self) -> int:
        """Send a re-INVITE with the same offer; its CSeq number."""
        assert self._uac is not None
        request = self._uac.send_reinvite(self.call.dialog, self.call.sdp_offer, self.server)
        return int(request.cseq.seq)

    def cancel(self) -> None:
        """Give up while it rings (CANCEL)."""
        assert self._uac is not None
        assert self.call.cancel(self._uac) is not None, "the call is not ringing"

    def hang_up(self) -> None:
        assert self._uac is not None
        assert self.call.hangup(self._uac) is not None, "the call is not answered"

    def _on_refer(self, _call: Any, target: str) -> None:
        self.referred_to = target

    async def close(self) -> None:
        if self._player is not None:
            self._player.cancel()
            await asyncio.gather(self._player, return_exceptions=True)
        if self.rtp is not None:
            await self.rtp.close()
        if self._uas is not None:
            await self._uas.stop()
