"""The SIP stack behind a small interface, so that it can be replaced: aiosipua (signalling,
RFC 3261 over UDP and TCP) and aiortp (RTP, RFC 4733 DTMF). Why these: docs/architecture.md.

- `SipListener` listens on one address with UDP and TCP, answers `100 Trying` itself and
  hands each new INVITE to `on_invite` as a `SipInvite`.
- A `SipInvite` rings, rejects with any status, or accepts: `accept()` binds an RTP port,
  answers `200 OK` with the SDP (PCMU or PCMA, whichever the offer prefers, and
  telephone-event), and gives back the `RtpLink` the call's audio goes through. Once
  answered it hangs up (BYE) and transfers (REFER). `on_end` fires once when the far end
  ends it (CANCEL while ringing, BYE after).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiortp import RTPSession
from aiosipua import CallSession, IncomingCall, SipRequest, SipResponse
from aiosipua.dialog import DialogState
from aiosipua.headers import parse_via, stringify_via
from aiosipua.sdp import serialize_sdp
from aiosipua.transport import SipTransport, TcpSipTransport, UdpSipTransport, _UdpProtocol
from aiosipua.uas import SipUAS

from ..audio.formats import AudioFormat

log = logging.getLogger(__name__)

PCMU, PCMA, TELEPHONE_EVENT = 0, 8, 101
MAX_ENDED = 4096  # ended calls' Call-IDs kept, so that a late retransmission rings nothing
CODECS = {PCMU: AudioFormat.PCMU, PCMA: AudioFormat.PCMA}


class RtpLink:
    """One call's RTP: G.711 payloads out, decoded 8 kHz s16 and DTMF digits in."""

    def __init__(self, media: CallSession) -> None:
        self._media = media
        self.format = CODECS[media.chosen_payload_type]
        self.on_audio: Callable[[bytes], None] = _ignore
        self.on_dtmf: Callable[[str], None] = _ignore
        session: RTPSession = media.rtp_session
        session.on_audio = lambda pcm, _ts: self.on_audio(pcm)
        session.on_dtmf = lambda digit, _duration: self.on_dtmf(digit)

    def send(self, payload: bytes, timestamp: int) -> None:
        self._media.send_audio(payload, timestamp)

    async def close(self) -> None:
        await self._media.close()


class UdpTransport(UdpSipTransport):
    """aiosipua's UDP transport, minus an `isinstance` check on the loop's transport that
    uvloop's fails (its transports are not asyncio's classes): the failed check logged an
    error, and under uvloop the endpoint never received a datagram."""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=self.local_addr
        )
        self._udp_transport = transport


class TcpTransport(TcpSipTransport):
    """aiosipua's TCP transport, answering on the connection a request came in on (RFC 3261
    §18.2.2). aiosipua routes a response by its Via, and without `rport` that names the
    caller's listening port, a connection it does not have (sipp over TCP)."""

    async def start(self) -> None:
        deliver = self.on_message
        if deliver is not None:

            def on_message(message: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
                if isinstance(message, SipRequest):
                    _via_is_the_connection(message, addr)
                deliver(message, addr)

            self.on_message = on_message
        await super().start()


def _via_is_the_connection(request: SipRequest, addr: tuple[str, int]) -> None:
    vias = request.headers.get("via")
    if not vias:
        return
    top = parse_via(vias[0])
    top.params["received"], top.params["rport"] = addr[0], str(addr[1])
    request.headers.remove("Via")
    for via in [stringify_via(top), *vias[1:]]:
        request.headers.append("Via", via)


class _Protocol(_UdpProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._owner._udp_transport = transport  # type: ignore[assignment]


def _ignore(_: Any) -> None:
    pass


class SipInvite:
    """One incoming INVITE, from ringing to its end."""

    def __init__(self, call: IncomingCall, uas: SipUAS, listener: SipListener) -> None:
        self._call = call
        self._uas = uas
        self._listener = listener
        self.on_end: Callable[[], None] = _nothing
        self._ended = False
        self._media: CallSession | None = None

    @property
    def sip_call_id(self) -> str:
        return self._call.call_id

    @property
    def headers(self) -> list[dict[str, str]]:
        """The INVITE's headers as it sent them (names as written, compact forms expanded,
        values as they stand), in order. Except: the top Via has the `received` and `rport`
        the transport stamped, and the Vias come first, where a caller puts them (stamping
        moved them last)."""
        headers = [
            {"name": name, "value": value}
            for name, values in self._call.invite.headers.items()
            for value in values
        ]
        return sorted(headers, key=lambda header: header["name"].lower() != "via")

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def answered(self) -> bool:
        return self._call.dialog.state == DialogState.CONFIRMED

    def ringing(self) -> None:
        self._call.ringing()

    def reject(self, status_code: int) -> None:
        self._call.reject(status_code)
        self._forget()

    async def accept(self) -> RtpLink:
        """Answer the call; raises ValueError when the offer has no G.711 to answer with."""
        offer = self._call.sdp_offer
        if offer is None:
            raise ValueError("the INVITE has no SDP offer")
        local_ip, sdp_ip = self._listener.addresses_towards(self._call.source_addr[0])
        media: CallSession | None = None
        for port in self._listener.rtp_ports():
            media = CallSession(
                local_ip,
                port,
                offer,
                advertised_ip=sdp_ip if sdp_ip != local_ip else None,
                supported_codecs=[PCMU, PCMA],
                dtmf_payload_type=TELEPHONE_EVENT,
                skip_audio_gaps=True,
                plc=False,
                # Media goes where the caller's packets come from (NAT), not only where its
                # SDP says.
                symmetric_rtp=True,
            )
            try:
                await media.start()
                break
            except OSError:  # taken: try the next port
                media = None
        if media is None:
            raise ValueError("no free RTP port in the configured range")
        self._call.accept(media.sdp_answer)
        self._media = media
        return RtpLink(media)

    def reoffered(self) -> None:
        """A re-INVITE on the answered call (a refresh, a new address; trunks and softphones
        send them): answered with the same session, media sent where the new offer says."""
        answer = self._call.sdp_answer
        offer = self._call.sdp_offer
        if self._media is None or answer is None:
            self._call._send_response(491, "Request Pending")
            return
        if offer is not None and offer.rtp_address is not None:
            self._media.update_remote(offer.rtp_address)
        self._call._send_response(
            200, "OK", body=serialize_sdp(answer), content_type="application/sdp"
        )

    def hang_up(self) -> None:
        if not self._ended:
            self._ended = True
            try:
                if self.answered:
                    self._call.hangup()
                else:
                    self._call.reject(487)
            except Exception:  # the listener has stopped: nothing more can be sent
                log.warning("SIP %s: could not send the hang-up", self.sip_call_id, exc_info=True)
            self._forget()

    def refer(self, target_uri: str) -> None:
        """A blind transfer: REFER with `Refer-To: target_uri` on the call's dialog."""
        host, port = self._call._signaling_addr()
        refer = self._call.dialog.create_request("REFER", via_host=host, via_port=port)
        refer.headers.set_single("Refer-To", f"<{target_uri}>")
        refer.headers.set_single("Referred-By", f"<{self._call.callee}>")
        refer.headers.set_single("Contact", f"<sip:{host}:{port}>")
        self._uas.transport.send(refer, self._call.source_addr)

    def far_end_ended(self) -> None:
        if not self._ended:
            self._ended = True
            self._forget()
            self.on_end()

    def _forget(self) -> None:
        # aiosipua keeps a call until BYE or CANCEL; one ended from here is dropped now.
        self._uas._calls.pop(self._call.call_id, None)
        self._listener.forget(self._call.call_id)


def _nothing() -> None:
    pass


class SipListener:
    """SIP on `host:port` over UDP and TCP; each new INVITE goes to `on_invite`."""

    def __init__(
        self,
        host: str,
        port: int,
        on_invite: Callable[[SipInvite], None],
        *,
        public_address: str | None = None,
        rtp_ports: tuple[int, int] = (10000, 20000),
    ) -> None:
        self.host, self.port = host, port
        self.public_address = public_address
        self._on_invite = on_invite
        self._rtp_range = rtp_ports
        self._next_rtp = rtp_ports[0]
        self._invites: dict[str, SipInvite] = {}
        self._ended: dict[str, None] = {}  # recent Call-IDs, oldest first: retransmissions
        self._agents: list[SipUAS] = []

    async def start(self) -> None:
        transports: list[SipTransport] = [
            UdpTransport(local_addr=(self.host, self.port)),
            TcpTransport(local_addr=(self.host, self.port)),
        ]
        for transport in transports:
            uas = SipUAS(transport, user_agent="openrealtime")
            uas.on_invite = lambda call, uas=uas: self._invite(call, uas)
            uas.on_bye = lambda call, _request: self._far_end(call.call_id)
            uas.on_cancel = lambda request, _addr: self._far_end(request.call_id or "")
            uas.on_reinvite = self._reinvite
            await uas.start()
            self._agents.append(uas)
        log.info("SIP listening on %s:%d (UDP and TCP)", self.host, self.port)

    async def stop(self) -> None:
        for invite in list(self._invites.values()):
            invite.hang_up()
        for uas in self._agents:
            await uas.stop()

    def addresses_towards(self, remote_ip: str) -> tuple[str, str]:
        """Where to bind RTP, and the address the SDP gives for it."""
        local = self.host
        if local in ("0.0.0.0", "::"):
            # The address this host reaches the caller from.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((remote_ip, 9))
                sdp = probe.getsockname()[0]
        else:
            sdp = local
        return local, self.public_address or sdp

    def rtp_ports(self) -> list[int]:
        """Even ports of the range (RTP's convention; RTCP takes the odd one above), starting
        after the last one handed out."""
        low, high = self._rtp_range
        first = low + (low % 2)
        ports = list(range(first, high, 2))
        start = max(0, (self._next_rtp - first) // 2) % max(1, len(ports))
        ordered = ports[start:] + ports[:start]
        self._next_rtp = ordered[0] + 2 if ordered else low
        return ordered

    def _invite(self, call: IncomingCall, uas: SipUAS) -> None:
        known = self._invites.get(call.call_id)
        if known is not None or call.call_id in self._ended:
            # A retransmitted INVITE (UDP, a slow answer): aiosipua took it for a new call and
            # replaced the one it holds, whose dialog the caller's BYE or CANCEL names.
            if known is not None:
                uas._calls[call.call_id] = known._call
            else:
                uas._calls.pop(call.call_id, None)
            return
        invite = SipInvite(call, uas, self)
        self._invites[call.call_id] = invite
        try:
            self._on_invite(invite)
        except Exception:
            log.exception("SIP INVITE %s failed", call.call_id)
            invite.reject(500)

    def _reinvite(self, call: IncomingCall) -> None:
        invite = self._invites.get(call.call_id)
        if invite is not None:
            invite.reoffered()

    def _far_end(self, sip_call_id: str) -> None:
        invite = self._invites.get(sip_call_id)
        if invite is not None:
            invite.far_end_ended()

    def forget(self, sip_call_id: str) -> None:
        self._invites.pop(sip_call_id, None)
        self._ended[sip_call_id] = None
        while len(self._ended) > MAX_ENDED:
            del self._ended[next(iter(self._ended))]
