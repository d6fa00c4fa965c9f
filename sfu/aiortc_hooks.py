"""Every access the SFU makes to aiortc and aioice internals, and nothing else.

aiortc is a complete WebRTC endpoint: it decodes what it receives and encodes what it sends.
An SFU must do neither, and aiortc has no public API for forwarding RTP, so the SFU reaches into
it. All such reaches live here, each with a comment naming what it touches and why, so that an
aiortc upgrade is reviewed in one file. Three layers keep a moved internal from failing quietly:

1. an exact version check at import (aiortc 1.16.0, aioice 0.13.0);
2. a static check at import that every hooked class attribute and function still exists with
   the parameters we call it with (:func:`check_static_internals`);
3. a check on every object we hook that its private instance attributes exist
   (:func:`_require`), plus :func:`verify_internals` for tests, and a loopback integration test
   (``tests/sfu/test_sfu_hooks.py``) proving that forwarding actually works.

Everything crossing this boundary is a plain SFU record (:mod:`sfu.packets`) or a primitive:
the rest of the SFU never sees an aiortc RTP packet or a private attribute.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import logging
import queue
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aioice.candidate as _aioice_candidate
import aioice.ice as _aioice_ice
import aioice.stun as _aioice_stun
import pylibsrtp as _pylibsrtp
from aioice import Candidate as _Candidate
from aiortc import (
    RTCDtlsTransport,
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpReceiver,
    RTCRtpSender,
)
from aiortc import codecs as _aiortc_codecs
from aiortc import rtcdtlstransport as _aiortc_dtls
from aiortc import rtcrtpparameters as _aiortc_parameters
from aiortc import rtcrtpreceiver as _aiortc_receiver_module
from aiortc import rtp as _aiortc_rtp
from aiortc.codecs import h264 as _aiortc_h264
from aiortc.codecs import vpx as _aiortc_vpx

from sfu.errors import SfuException
from sfu.fastpath import HeaderTemplate
from sfu.h264 import PROFILE_LEVEL_IDS
from sfu.packets import CodecSpec, InboundRtp, ReceiveInfo, SenderReport
from sfu.sdp_simulcast import REPAIRED_RID_URI, RID_URI, SimulcastOffer
from sfu.simulcast import RidResolver

logger = logging.getLogger(__name__)

REQUIRED_VERSIONS = {"aiortc": "1.16.0", "aioice": "0.13.0"}


class AiortcInternalsError(SfuException, RuntimeError):
    """aiortc/aioice is not the version, or not the shape, this module was written against."""


def _check_versions() -> None:
    for package, required in REQUIRED_VERSIONS.items():
        installed = importlib.metadata.version(package)
        if installed != required:
            raise AiortcInternalsError(
                f"sfu.aiortc_hooks reaches into {package} internals and was written against "
                f"{package}=={required}, but {package}=={installed} is installed. Install "
                f"{package}=={required}, or review every hook in sfu/aiortc_hooks.py against "
                f"the new version and update REQUIRED_VERSIONS."
            )


_check_versions()

# ---------------------------------------------------------------------------------------------
# Static shape checks (run at import).
# ---------------------------------------------------------------------------------------------

#: (owner, attribute, parameter names after self) for every internal callable we wrap or call.
_CALLABLES: list[tuple[object, str, tuple[str, ...] | None]] = [
    # Tap: every inbound RTP packet of a receiver passes here (called by RTCDtlsTransport).
    (RTCRtpReceiver, "_handle_rtp_packet", ("packet", "arrival_time_ms")),
    # Learn the negotiated codecs/RTX mapping, then stop the decoder thread it starts.
    (RTCRtpReceiver, "receive", ("parameters",)),
    (RTCRtpReceiver, "_RTCRtpReceiver__stop_decoder", ()),
    # Sender reports of the publisher (NTP <-> RTP timestamp pairs for recording's A/V sync).
    (RTCRtpReceiver, "_handle_rtcp_packet", ("packet",)),
    # Upstream feedback: clamp REMB, send PLI/REMB.
    (RTCRtpReceiver, "_send_rtcp", ("packet",)),
    (RTCRtpReceiver, "_send_rtcp_pli", ("media_ssrc",)),
    # Sender start (extension map ready, DTLS up), RTCP from subscribers, NACK service.
    (RTCRtpSender, "send", ("parameters",)),
    (RTCRtpSender, "_run_rtp", ("codec",)),
    (RTCRtpSender, "_next_encoded_frame", ("codec",)),
    (RTCRtpSender, "_handle_rtcp_packet", ("packet",)),
    (RTCRtpSender, "_retransmit", ("sequence_number",)),
    # Egress: SRTP-protect and send one datagram (the slow path; the fast path does the same
    # inline: see SenderPort), and what the fast path's history entries are turned back into.
    (RTCDtlsTransport, "_send_rtp", ("data",)),
    (_aiortc_dtls, "State", None),
    (_aioice_ice.Connection, "sendto", ("data", "component")),
    (_aioice_ice.StunProtocol, "send_data", ("data", "addr")),
    (_aioice_ice.CandidatePair, "remote_addr", None),
    (_aiortc_rtp.RtpPacket, "parse", ("data", "extensions_map")),
    # DTLS role before answering (the SFU as DTLS server: see answer_as_dtls_server).
    (RTCDtlsTransport, "_set_role", ("role",)),
    # Host candidate gathering (host address restriction, port range).
    (_aioice_ice.Connection, "get_component_candidates", ("component", "addresses", "timeout")),
    # Consent freshness (replaced per connection: see patient_consent).
    (_aioice_ice.Connection, "query_consent", ()),
    (_aioice_ice.Connection, "build_request", ("pair", "nominate")),
    (_aioice_ice.Connection, "close", ()),
    (_aioice_stun.Transaction, "__init__", ("request", "addr", "protocol", "retransmissions")),
    (_aioice_ice, "get_host_addresses", ("use_ipv4", "use_ipv6")),
    (_aioice_ice, "server_reflexive_candidate", ("protocol", "stun_server")),
    (_aioice_ice, "StunProtocol", None),
    (
        _aioice_candidate,
        "candidate_foundation",
        ("candidate_type", "candidate_transport", "base_address"),
    ),
    (_aioice_candidate, "candidate_priority", ("candidate_component", "candidate_type")),
    # Simulcast: MID-first routing (RFC 8843 section 9.2) and per-SSRC NACK generation.
    (_aiortc_dtls.RtpRouter, "route_rtp", ("packet",)),
    (_aiortc_receiver_module, "NackGenerator", None),
    (_aiortc_parameters, "RTCRtpHeaderExtensionParameters", None),
    # The decoder worker aiortc starts per receiver (checked so a rename is noticed).
    (_aiortc_receiver_module, "decoder_worker", None),
    # RTP/RTCP model and helpers.
    (_aiortc_rtp, "RtpPacket", None),
    (_aiortc_rtp, "RtcpPsfbPacket", None),
    (_aiortc_rtp, "RtcpRtpfbPacket", None),
    (_aiortc_rtp, "pack_remb_fci", ("bitrate", "ssrcs")),
    (_aiortc_rtp, "unpack_remb_fci", ("data",)),
    (_aiortc_rtp, "RtcpSrPacket", None),
    # Recording: RTP payload -> codec bitstream (VP8 descriptor removed, H.264 to Annex B).
    (_aiortc_vpx, "vp8_depayload", ("payload",)),
    (_aiortc_h264, "h264_depayload", ("payload",)),
    # The codec table aiortc negotiates from (extended below with H.264 Main/High, Opus stereo).
    (_aiortc_codecs, "CODECS", None),
]

_CONSTANTS = {
    "RTP_HISTORY_SIZE": 128,
    "RTCP_PSFB_PLI": 1,
    "RTCP_PSFB_FIR": 4,
    "RTCP_PSFB_APP": 15,
    "RTCP_RTPFB_NACK": 1,
}


def check_static_internals() -> None:
    problems = []
    for owner, name, params in _CALLABLES:
        target = getattr(owner, name, None)
        if target is None:
            problems.append(f"{getattr(owner, '__name__', owner)}.{name} is missing")
            continue
        if params is not None:
            actual = [p for p in inspect.signature(target).parameters if p != "self"]
            if tuple(actual[: len(params)]) != params:
                problems.append(f"{name}{tuple(actual)} no longer takes {params}")
    for name, value in _CONSTANTS.items():
        if getattr(_aiortc_rtp, name, None) != value:
            problems.append(f"aiortc.rtp.{name} is not {value}")
    if problems:
        raise AiortcInternalsError("aiortc/aioice internals moved: " + "; ".join(problems))


check_static_internals()

_RtpPacket: Any = _aiortc_rtp.RtpPacket
_RtcpPsfbPacket: Any = _aiortc_rtp.RtcpPsfbPacket
_RtcpRtpfbPacket: Any = _aiortc_rtp.RtcpRtpfbPacket
_pack_remb_fci: Any = _aiortc_rtp.pack_remb_fci
_unpack_remb_fci: Any = _aiortc_rtp.unpack_remb_fci
RTP_HISTORY_SIZE: int = _aiortc_rtp.RTP_HISTORY_SIZE
_PSFB_PLI: int = _aiortc_rtp.RTCP_PSFB_PLI
_PSFB_FIR: int = _aiortc_rtp.RTCP_PSFB_FIR
_PSFB_APP: int = _aiortc_rtp.RTCP_PSFB_APP
_RTPFB_NACK: int = _aiortc_rtp.RTCP_RTPFB_NACK
_RtcpSrPacket: Any = _aiortc_rtp.RtcpSrPacket
#: The DTLS state in which ``_send_rtp`` sends (the fast path checks the same).
_DTLS_CONNECTED: Any = _aiortc_dtls.State.CONNECTED


# ---------------------------------------------------------------------------------------------
# Codec table: what encoders send (H.264 Main/High) and Opus stereo.
# ---------------------------------------------------------------------------------------------

#: First payload type for the profiles we add: aiortc 1.16 uses 97..102 for VP8 and H.264
#: constrained baseline/baseline (checked below).
_EXTRA_H264_PT = 103


def extend_codecs() -> None:
    """Let aiortc negotiate H.264 Main/High/Constrained High and announce Opus stereo.

    Touches ``aiortc.codecs.CODECS`` (the module-level table every peer connection in the
    process negotiates from). aiortc lists only constrained baseline/baseline H.264 because it
    must be able to *decode* what it accepts; the SFU never decodes (its receivers' decoders
    are stopped), so any profile can be forwarded and recorded as is. Opus gets
    ``stereo=1; sprop-stereo=1``: publishers may send stereo, subscribers are told it may come.
    Idempotent.
    """
    video: list[Any] = _aiortc_codecs.CODECS["video"]
    audio: list[Any] = _aiortc_codecs.CODECS["audio"]
    present = {c.parameters.get("profile-level-id") for c in video}
    used = {c.payloadType for c in video}
    if audio and audio[0].mimeType.lower() == "audio/opus":
        audio[0].parameters.setdefault("stereo", 1)
        audio[0].parameters.setdefault("sprop-stereo", 1)
    else:
        raise AiortcInternalsError("aiortc.codecs.CODECS['audio'] no longer starts with Opus")
    if max(used, default=0) >= _EXTRA_H264_PT and not present >= set(PROFILE_LEVEL_IDS.values()):
        raise AiortcInternalsError("aiortc's video payload types moved: review extend_codecs()")
    pt = _EXTRA_H264_PT
    for key, profile_level_id in PROFILE_LEVEL_IDS.items():
        if profile_level_id in present or key == "H264":
            continue
        feedback = [
            _aiortc_parameters.RTCRtcpFeedback(type="nack"),
            _aiortc_parameters.RTCRtcpFeedback(type="nack", parameter="pli"),
            _aiortc_parameters.RTCRtcpFeedback(type="goog-remb"),
        ]
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/H264",
                clockRate=90000,
                payloadType=pt,
                rtcpFeedback=feedback,
                parameters={
                    "level-asymmetry-allowed": "1",
                    "packetization-mode": "1",
                    "profile-level-id": profile_level_id,
                },
            )
        )
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/rtx", clockRate=90000, payloadType=pt + 1, parameters={"apt": pt}
            )
        )
        pt += 2


extend_codecs()


def depayloader(codec: str) -> Callable[[bytes], bytes]:
    """RTP payload -> codec bitstream for ``codec`` (a codec key): aiortc's own depayloaders.

    VP8: the payload descriptor is removed (RFC 7741); H.264: single NAL units, STAP-A and
    FU-A become Annex B (RFC 6184); Opus payloads are the frames themselves.
    """
    if codec == "VP8":
        vp8: Callable[[bytes], bytes] = _aiortc_vpx.vp8_depayload
        return vp8
    if codec.startswith("H264"):
        h264: Callable[[bytes], bytes] = _aiortc_h264.h264_depayload
        return h264
    return bytes

#: Private instance attributes read or written, checked on every hooked object.
_RECEIVER_ATTRS = (
    "_RTCRtpReceiver__jitter_buffer",
    "_RTCRtpReceiver__decoder_queue",
    "_RTCRtpReceiver__decoder_thread",
    "_RTCRtpReceiver__rtcp_ssrc",
    "_RTCRtpReceiver__nack_generator",
    "_RTCRtpReceiver__rtx_ssrc",
)
_DTLS_ATTRS = (
    "_state",
    "_tx_srtp",
    "transport",
    "_RTCDtlsTransport__tx_bytes",
    "_RTCDtlsTransport__tx_packets",
)
_SENDER_ATTRS = (
    "_ssrc",
    "_stream_id",
    "_track_id",
    "_RTCRtpSender__encoder",
    "_RTCRtpSender__rtp_history",
    "_RTCRtpSender__rtp_header_extensions_map",
    "_RTCRtpSender__rtp_started",
    "_RTCRtpSender__rtp_exited",
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__octet_count",
    "_RTCRtpSender__packet_count",
)


class DirectProtect:
    """``pylibsrtp.Session.protect`` of one session, minus its per-call wrapper work.

    pylibsrtp's ``protect`` checks the type, allocates an ``int *`` with cffi, copies the packet
    into the session's buffer, calls ``srtp_protect``, checks the status through a helper and
    slices the result out: about as much Python time as libsrtp's own AES/HMAC work (see
    docs/benchmarks.md). Here the ``int *`` is allocated once and the same three steps (copy in,
    ``srtp_protect`` on the session's own context and buffer, copy out) run inline. Built by
    :meth:`of`, which returns None unless the session has the shape this was written against;
    ``tests/sfu/test_direct_protect.py`` checks it produces pylibsrtp's bytes exactly.
    """

    __slots__ = ("_buffer", "_cdata", "_length", "_limit", "_session", "_srtp")

    def __init__(self, session: Any) -> None:
        self._session = session
        self._srtp = session._srtp[0]
        self._cdata = session._cdata
        self._buffer = session._buffer
        self._length = _srtp_ffi.new("int *")
        #: Longer packets go through pylibsrtp (which refuses them): the trailer must fit.
        self._limit = len(session._cdata) - _pylibsrtp.SRTP_MAX_TRAILER_LEN

    @classmethod
    def of(cls, session: Any) -> DirectProtect | None:
        if not all(hasattr(session, n) for n in ("_srtp", "_cdata", "_buffer")):
            return None
        try:
            return cls(session)
        except (TypeError, IndexError, AttributeError):
            return None

    def protect(self, data: bytes) -> bytes:
        size = len(data)
        if size > self._limit:
            return self._session.protect(data)  # type: ignore[no-any-return]
        self._buffer[0:size] = data
        length = self._length
        length[0] = size
        status = _srtp_protect(self._srtp, self._cdata, length)
        if status:
            raise _pylibsrtp.Error(f"srtp_protect failed with status {status}")
        return self._buffer[0 : length[0]]  # type: ignore[no-any-return]


_srtp_ffi: Any = _pylibsrtp._binding.ffi
_srtp_protect: Any = _pylibsrtp._binding.lib.srtp_protect


def _require(obj: object, names: tuple[str, ...]) -> None:
    missing = [n for n in names if not hasattr(obj, n)]
    if missing:
        raise AiortcInternalsError(
            f"{type(obj).__name__} has no {', '.join(missing)}: aiortc internals moved"
        )


# ---------------------------------------------------------------------------------------------
# Proof of no transcoding.
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class TranscodingProbe:
    """Counts media work aiortc would do on the SFU's forwarding path: must stay at zero."""

    #: Encoded frames that reached an SFU receiver's decoder queue.
    frames_to_decoder: int = 0
    #: Calls of an SFU sender's encode step (``_next_encoded_frame``).
    encoder_calls: int = 0
    #: Packets the SFU receivers' (neutralised) jitter buffers were given: proves the tap ran.
    packets_past_tap: int = 0


class _NullJitterBuffer:
    """Stands in for a receiver's JitterBuffer: never assembles a frame, so nothing is decoded.

    Also saves the reassembly work the SFU does not need (findings: the receive path
    depacketises and runs the jitter buffer for every packet).
    """

    def __init__(self, probe: TranscodingProbe) -> None:
        self._probe = probe

    def add(self, packet: object) -> tuple[bool, None]:
        self._probe.packets_past_tap += 1
        return False, None


class _DiscardingQueue(queue.Queue[Any]):
    """Stands in for a receiver's decoder input queue: counts and drops frames.

    Only the ``None`` that tells the decoder thread to exit is queued, so frames can never pile
    up even if a future aiortc queued them another way.
    """

    def __init__(self, probe: TranscodingProbe) -> None:
        super().__init__()
        self._probe = probe

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(item, block, timeout)
        else:
            self._probe.frames_to_decoder += 1


# ---------------------------------------------------------------------------------------------
# Publisher side: receivers.
# ---------------------------------------------------------------------------------------------


class ReceiverEvents(Protocol):
    """What a publisher-side receiver reports to the SFU."""

    async def on_rtp(self, packet: InboundRtp) -> None:
        """Every RTP packet, before aiortc's own handling. Must not raise."""

    def on_receiver_started(self, info: ReceiveInfo) -> None:
        """The receiver was configured (codecs, RTX payload types)."""

    def on_upstream_estimate(self, bitrate: int) -> int:
        """aiortc's estimator wants to send REMB ``bitrate``; return the value to send."""

    def on_sender_report(self, report: SenderReport) -> None:
        """The publisher sent an RTCP sender report for one of its streams."""


class ReceiverTap:
    """Hooks one publisher-side :class:`RTCRtpReceiver`; create before ``receive()`` runs.

    Touches: ``_handle_rtp_packet`` (wrapped per instance: tap, then aiortc's own handling so it
    still sends NACKs, receiver reports and REMB upstream), ``_handle_rtcp_packet`` (wrapped:
    sender reports are seen first, for recording's A/V sync), ``receive`` (wrapped: learn the
    codecs, then stop the decoder thread), ``__jitter_buffer`` and ``__decoder_queue``
    (replaced: no frame is assembled or decoded), ``_send_rtcp`` (wrapped: clamp REMB),
    ``_send_rtcp_pli`` and ``__rtcp_ssrc`` (upstream PLI and REMB).
    """

    def __init__(self, receiver: RTCRtpReceiver, events: ReceiverEvents, probe: TranscodingProbe):
        _require(receiver, _RECEIVER_ATTRS)
        if getattr(receiver, "_sfu_tap", None) is not None:
            raise AiortcInternalsError("receiver is already tapped")
        r: Any = receiver
        self._receiver = r
        self._events = events
        self._started = False
        #: Simulcast receivers learn SSRC -> rid (see enable_simulcast).
        self._rids: RidResolver | None = None
        r._sfu_tap = self
        # Per instance, so other aiortc peers in the process (tests, clients) keep decoding.
        r._RTCRtpReceiver__jitter_buffer = _NullJitterBuffer(probe)
        r._RTCRtpReceiver__decoder_queue = _DiscardingQueue(probe)
        self._original_handle = r._handle_rtp_packet
        self._original_receive = r.receive
        self._original_send_rtcp = r._send_rtcp
        self._original_handle_rtcp = r._handle_rtcp_packet
        r._handle_rtp_packet = self._handle_rtp_packet
        r._handle_rtcp_packet = self._handle_rtcp_packet
        r.receive = self._receive
        r._send_rtcp = self._send_rtcp

    async def _handle_rtp_packet(self, packet: Any, arrival_time_ms: int) -> None:
        rid: str | None = None
        rids = self._rids
        if rids is not None:
            rid = self._learn_rid(rids, packet)
        await self._events.on_rtp(
            InboundRtp(
                ssrc=packet.ssrc,
                payload_type=packet.payload_type,
                sequence_number=packet.sequence_number,
                timestamp=packet.timestamp,
                marker=packet.marker,
                payload=packet.payload,
                padding_size=packet.padding_size,
                audio_level=packet.extensions.audio_level,
                rid=rid,
            )
        )
        await self._original_handle(packet, arrival_time_ms)

    # -- simulcast ------------------------------------------------------------------------

    def enable_simulcast(self) -> None:
        """Receive several simulcast layers (SSRCs) on this receiver. Idempotent.

        Touches ``__nack_generator`` (replaced by one generator per SSRC: a single one spanning
        interleaved layers sees their unrelated sequence numbers as gaps and NACKs bogus
        packets), ``__rtx_ssrc`` (RTX SSRC -> media SSRC, filled from repaired-rtp-stream-id:
        aiortc maps RTX only from ``a=ssrc-group:FID``, which rid simulcast does not send) and,
        once ``receive()`` ran, the transport's ``RtpRouter.route_rtp`` (see
        :func:`route_by_mid`).
        """
        if self._rids is not None:
            return
        self._rids = RidResolver()
        r = self._receiver
        if r._RTCRtpReceiver__nack_generator is not None:
            r._RTCRtpReceiver__nack_generator = PerSsrcNack()
        if self._started:
            route_by_mid(r.transport)

    def _learn_rid(self, rids: RidResolver, packet: Any) -> str | None:
        ext = packet.extensions
        ssrc = packet.ssrc
        rid = rids.resolve(ssrc, ext.rtp_stream_id, ext.repaired_rtp_stream_id)
        if rid is not None and rids.is_repair(ssrc):
            rtx_map: dict[int, int] = self._receiver._RTCRtpReceiver__rtx_ssrc
            media = rids.media_ssrc(rid)
            if media is not None and rtx_map.get(ssrc) != media:
                rtx_map[ssrc] = media
                while len(rtx_map) > _MAX_SSRCS:
                    del rtx_map[next(iter(rtx_map))]
        return rid

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        if isinstance(packet, _RtcpSrPacket):
            info = packet.sender_info
            self._events.on_sender_report(
                SenderReport(
                    ssrc=packet.ssrc, ntp_timestamp=info.ntp_timestamp, rtp_timestamp=info.rtp_timestamp
                )
            )
        await self._original_handle_rtcp(packet)

    async def _receive(self, parameters: Any) -> None:
        await self._original_receive(parameters)
        if self._started:
            return  # aiortc calls receive() again on every renegotiation; it is a no-op then
        self._started = True
        if self._rids is not None:
            route_by_mid(self._receiver.transport)
        # aiortc just started a decoder thread for this receiver. Nothing will reach it (null
        # jitter buffer), so stop it now rather than keep one idle thread per forwarded track;
        # with the thread gone aiortc also skips its decoder-queue step.
        self._receiver._RTCRtpReceiver__stop_decoder()
        media: dict[int, CodecSpec] = {}
        rtx_apt: dict[int, int] = {}
        for codec in parameters.codecs:
            spec = CodecSpec(
                mime_type=codec.mimeType,
                clock_rate=codec.clockRate,
                payload_type=codec.payloadType,
                parameters=dict(codec.parameters),
            )
            if spec.is_rtx:
                apt = codec.parameters.get("apt")
                if isinstance(apt, int):
                    rtx_apt[codec.payloadType] = apt
            else:
                media[codec.payloadType] = spec
        self._events.on_receiver_started(ReceiveInfo(media=media, rtx_apt=rtx_apt))

    async def _send_rtcp(self, packet: Any) -> None:
        if isinstance(packet, _RtcpPsfbPacket) and packet.fmt == _PSFB_APP:
            try:
                bitrate, ssrcs = _unpack_remb_fci(packet.fci)
            except ValueError:
                pass  # not a REMB: some other application feedback, send it unchanged
            else:
                value = self._events.on_upstream_estimate(bitrate)
                if value != bitrate:
                    packet = _RtcpPsfbPacket(
                        fmt=_PSFB_APP,
                        ssrc=packet.ssrc,
                        media_ssrc=packet.media_ssrc,
                        fci=_pack_remb_fci(value, ssrcs),
                    )
        await self._original_send_rtcp(packet)

    async def send_pli(self, media_ssrc: int) -> None:
        """Ask the publisher for a keyframe (RFC 4585 section 6.3.1)."""
        await self._receiver._send_rtcp_pli(media_ssrc)

    async def send_remb(self, bitrate: int, media_ssrc: int) -> None:
        """Send a REMB for ``media_ssrc`` now (bypassing the clamp: ``bitrate`` is final)."""
        rtcp_ssrc = self._receiver._RTCRtpReceiver__rtcp_ssrc
        if rtcp_ssrc is None:
            return
        packet = _RtcpPsfbPacket(
            fmt=_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=_pack_remb_fci(bitrate, [media_ssrc])
        )
        await self._original_send_rtcp(packet)


#: SSRCs one simulcast receiver keeps NACK state and RTX mappings for (3 layers + 3 RTX, and
#: the streams of a publisher that restarted its encoders).
_MAX_SSRCS = 16
_NackGenerator: Any = _aiortc_receiver_module.NackGenerator
_HeaderExtension: Any = _aiortc_parameters.RTCRtpHeaderExtensionParameters


class PerSsrcNack:
    """Stands in for a receiver's ``NackGenerator``: one real generator per media SSRC.

    aiortc calls ``add(packet)`` and then reads ``missing`` for that packet's SSRC, so
    ``missing`` is the set of the generator that saw the last packet.
    """

    def __init__(self) -> None:
        self._generators: dict[int, Any] = {}
        self.missing: set[int] = set()

    def add(self, packet: Any) -> bool:
        generator = self._generators.get(packet.ssrc)
        if generator is None:
            generator = self._generators[packet.ssrc] = _NackGenerator()
            while len(self._generators) > _MAX_SSRCS:
                del self._generators[next(iter(self._generators))]
        missed: bool = generator.add(packet)
        self.missing = generator.missing
        return missed


def route_by_mid(transport: Any) -> None:
    """Route RTP of unknown SSRCs by their MID header extension (RFC 8843 section 9.2).

    Touches ``RTCDtlsTransport._rtp_router`` and its ``route_rtp`` (wrapped per instance) and
    ``mid_table``/``ssrc_table``. aiortc routes by SSRC, else by payload type when exactly one
    receiver has it: with two video m-lines (camera and screen, or two simulcast tracks) rid
    simulcast packets, whose SSRCs no ``a=ssrc`` line announced, were all dropped. Here an
    unknown SSRC whose packet names a known mid is learnt for that mid's receiver; the MID is
    only sent until the SSRC is acknowledged, so learning from the first packets is enough.
    """
    router = transport._rtp_router
    if getattr(router, "_sfu_mid_routing", False):
        return
    _require(router, ("mid_table", "ssrc_table"))
    original = router.route_rtp
    ssrc_table: dict[int, Any] = router.ssrc_table
    mid_table: dict[str, Any] = router.mid_table

    def route_rtp(packet: Any) -> Any:
        if packet.ssrc not in ssrc_table:
            mid = packet.extensions.mid
            if mid is not None:
                receiver = mid_table.get(mid)
                if receiver is not None:
                    ssrc_table[packet.ssrc] = receiver
                    return receiver
        return original(packet)

    router.route_rtp = route_rtp
    router._sfu_mid_routing = True


def negotiate_rid_extensions(pc: RTCPeerConnection, offers: dict[str, SimulcastOffer]) -> None:
    """Accept the RID header extensions on the offer's simulcast m-lines.

    Call after ``setRemoteDescription``, before ``createAnswer``. Touches
    ``RTCRtpTransceiver._headerExtensions`` (what aiortc negotiated from its module-wide
    ``HEADER_EXTENSIONS``, which has no RID extensions): the offer's ids are added for these
    transceivers only, so the answer carries them and the receiver parses them, while the
    SFU's other connections (subscriber offers) stay as they were.
    """
    for transceiver in pc.getTransceivers():
        offer = offers.get(transceiver.mid or "")
        if offer is None:
            continue
        t: Any = transceiver
        _require(t, ("_headerExtensions",))
        present = {ext.uri for ext in t._headerExtensions}
        wanted = [(RID_URI, offer.rid_extension), (REPAIRED_RID_URI, offer.repaired_rid_extension)]
        for uri, ident in wanted:
            if ident is not None and uri not in present:
                t._headerExtensions.append(_HeaderExtension(id=ident, uri=uri))


# ---------------------------------------------------------------------------------------------
# Subscriber side: senders.
# ---------------------------------------------------------------------------------------------


class SenderPort:
    """Sends forwarded packets through one started subscriber-side :class:`RTCRtpSender`.

    Touches: ``__rtp_history`` (every packet is stored so aiortc's own NACK handling
    retransmits it, over RTX where negotiated), ``__rtp_header_extensions_map`` (serialize with
    the sender's own ids), the sender-report counters ``__ntp_timestamp``, ``__rtp_timestamp``,
    ``__octet_count``, ``__packet_count`` (only aiortc's RTP loop updates them otherwise, and it
    is idle here), ``_ssrc``, and ``RTCDtlsTransport._send_rtp`` (SRTP protect + send).

    The fast path (:meth:`send_now`, synchronous) does what ``_send_rtp`` and the coroutine
    chain below it do, without the chain: it touches ``RTCDtlsTransport._state``,
    ``_tx_srtp`` (the SRTP session: ``protect``), ``__tx_bytes``/``__tx_packets`` (transport
    stats), ``RTCIceTransport._connection`` and aioice ``Connection._nominated`` (the selected
    pair: ``protocol.transport.sendto(data, remote_addr)``, exactly what aioice's ``send``
    does). Its NACK history entries are the serialized packets (``bytes``); the
    :class:`SenderTap` turns one back into an ``RtpPacket`` when a NACK asks for it.
    """

    __slots__ = (
        "_addr",
        "_dtls",
        "_ext_map",
        "_history",
        "_nominated",
        "_pair",
        "_protect",
        "_protect_session",
        "_raw_sendto",
        "_send_rtp",
        "_sender",
        "_templates",
        "_transport",
        "clock_rate",
        "codec",
        "mid",
        "payload_type",
        "slow_sends",
        "ssrc",
    )

    def __init__(self, sender: Any, parameters: Any) -> None:
        codec = parameters.codecs[0]
        self._sender = sender
        self._history: dict[int, Any] = sender._RTCRtpSender__rtp_history
        self._ext_map = sender._RTCRtpSender__rtp_header_extensions_map
        self._send_rtp: Callable[[bytes], Awaitable[None]] = sender.transport._send_rtp
        self.payload_type: int = codec.payloadType
        self.clock_rate: int = codec.clockRate
        self.codec: str = codec.mimeType.split("/", 1)[1]
        self.mid: str | None = parameters.muxId
        self.ssrc: int = sender._ssrc
        dtls = sender.transport
        _require(dtls, _DTLS_ATTRS)
        _require(dtls.transport, ("_connection",))
        _require(dtls.transport._connection, ("_nominated",))
        self._dtls = dtls
        self._nominated: dict[int, Any] = dtls.transport._connection._nominated
        #: The selected pair last seen, its datagram transport, its socket's ``sendto`` and
        #: the remote address (refreshed when the pair changes).
        self._pair: Any = None
        self._transport: Any = None
        self._raw_sendto: Callable[[bytes, Any], int] | None = None
        self._addr: Any = None
        #: The SRTP session last seen and how to protect with it (refreshed when it changes).
        self._protect_session: Any = None
        self._protect: Callable[[bytes], bytes] | None = None
        #: Packets that took the slow path (padding, or a header layout without a template).
        self.slow_sends = 0
        #: (without audio level, with audio level); None where the layout cannot be patched.
        self._templates = (
            HeaderTemplate.learn(self._serialize_header, self.payload_type, with_level=False),
            HeaderTemplate.learn(self._serialize_header, self.payload_type, with_level=True),
        )

    def _serialize_header(
        self,
        marker: int,
        sequence_number: int,
        timestamp: int,
        abs_send_time: int,
        audio_level: tuple[bool, int] | None,
    ) -> bytes:
        """The header the slow path would send (aiortc's own serialization), empty payload."""
        packet = self._packet(marker, sequence_number, timestamp, b"", 0, audio_level, abs_send_time)
        data: bytes = packet.serialize(self._ext_map)
        return data

    def _packet(
        self,
        marker: int,
        sequence_number: int,
        timestamp: int,
        payload: bytes,
        padding_size: int,
        audio_level: tuple[bool, int] | None,
        abs_send_time: int,
    ) -> Any:
        packet = _RtpPacket(
            payload_type=self.payload_type,
            marker=marker,
            sequence_number=sequence_number,
            timestamp=timestamp,
            ssrc=self.ssrc,
            payload=payload,
        )
        packet.padding_size = padding_size
        extensions = packet.extensions
        extensions.mid = self.mid
        extensions.abs_send_time = abs_send_time
        extensions.audio_level = audio_level
        return packet

    def send_now(
        self,
        marker: int,
        sequence_number: int,
        timestamp: int,
        payload: bytes,
        padding_size: int,
        audio_level: tuple[bool, int] | None,
        abs_send_time: int,
        ntp_time: int,
    ) -> int | None:
        """Send one packet synchronously; ``None`` if it needs the slow path (:meth:`send`).

        Returns the bytes put on the wire. Raises ConnectionError if the leg is down.
        """
        template = self._templates[audio_level is not None]
        if template is None or padding_size:
            return None
        dtls = self._dtls
        pair = self._nominated.get(1)
        if dtls._state is not _DTLS_CONNECTED or pair is None:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        data = template.render(
            marker, sequence_number, timestamp, abs_send_time, audio_level, payload
        )
        self._history[sequence_number % RTP_HISTORY_SIZE] = data
        protect = self._protect
        if dtls._tx_srtp is not self._protect_session or protect is None:
            protect = self._learn_srtp(dtls._tx_srtp)
        protected = protect(data)
        if pair is not self._pair:
            self._learn_pair(pair)
        transport = self._transport
        raw = self._raw_sendto
        if raw is None or transport.get_write_buffer_size():
            # Datagrams queued in asyncio's transport go first (order), then this one.
            transport.sendto(protected, self._addr)
        else:
            try:
                raw(protected, self._addr)
            except OSError:
                # Full socket buffer or an error: asyncio's transport queues it or reports
                # the error to aioice exactly as ``transport.sendto`` always did.
                transport.sendto(protected, self._addr)
        dtls._RTCDtlsTransport__tx_bytes += len(protected)
        dtls._RTCDtlsTransport__tx_packets += 1
        sender = self._sender
        sender._RTCRtpSender__ntp_timestamp = ntp_time
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__octet_count += len(payload)
        sender._RTCRtpSender__packet_count += 1
        return len(data)

    def _learn_srtp(self, session: Any) -> Callable[[bytes], bytes]:
        direct = DirectProtect.of(session)
        protect: Callable[[bytes], bytes] = direct.protect if direct is not None else session.protect
        self._protect_session, self._protect = session, protect
        return protect

    def _learn_pair(self, pair: Any) -> None:
        """What aioice's ``Connection.send`` would use for ``pair``: its protocol's datagram
        transport and remote address; plus that transport's socket, written to directly while
        asyncio has nothing queued for it (asyncio's ``sendto`` checks, then does the same)."""
        transport = pair.protocol.transport
        sock = getattr(transport, "_sock", None)
        self._pair = pair
        self._transport = transport
        self._addr = pair.remote_addr
        peername = transport.get_extra_info("peername") if transport is not None else None
        self._raw_sendto = sock.sendto if isinstance(sock, socket.socket) and not peername else None

    async def send(
        self,
        *,
        marker: int,
        sequence_number: int,
        timestamp: int,
        payload: bytes,
        padding_size: int,
        audio_level: tuple[bool, int] | None,
        abs_send_time: int,
        ntp_time: int,
    ) -> int:
        """Send one packet; return the bytes put on the wire. Raises ConnectionError if down.

        Takes the fast path (:meth:`send_now`) when it can, else aiortc's own serialization
        and ``_send_rtp`` (packets with RTP padding, header layouts the template refused).
        """
        sent = self.send_now(
            marker,
            sequence_number,
            timestamp,
            payload,
            padding_size,
            audio_level,
            abs_send_time,
            ntp_time,
        )
        if sent is not None:
            return sent
        return await self.send_slow(
            marker=marker,
            sequence_number=sequence_number,
            timestamp=timestamp,
            payload=payload,
            padding_size=padding_size,
            audio_level=audio_level,
            abs_send_time=abs_send_time,
            ntp_time=ntp_time,
        )

    async def send_slow(
        self,
        *,
        marker: int,
        sequence_number: int,
        timestamp: int,
        payload: bytes,
        padding_size: int,
        audio_level: tuple[bool, int] | None,
        abs_send_time: int,
        ntp_time: int,
    ) -> int:
        """aiortc's way: an ``RtpPacket``, ``serialize``, ``RTCDtlsTransport._send_rtp``."""
        packet = self._packet(
            marker, sequence_number, timestamp, payload, padding_size, audio_level, abs_send_time
        )
        self._history[sequence_number % RTP_HISTORY_SIZE] = packet
        data = packet.serialize(self._ext_map)
        await self._send_rtp(data)
        self.slow_sends += 1
        sender = self._sender
        sender._RTCRtpSender__ntp_timestamp = ntp_time
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__octet_count += len(payload)
        sender._RTCRtpSender__packet_count += 1
        return len(data)


class SenderEvents(Protocol):
    """What a subscriber-side sender reports to the SFU."""

    async def on_sender_started(self, port: SenderPort) -> None:
        """The sender started: DTLS is connected and the answer was applied."""

    async def on_keyframe_request(self) -> None:
        """The subscriber sent PLI (or FIR)."""

    async def on_remb(self, bitrate: int, ssrc_count: int) -> None:
        """The subscriber estimated ``bitrate`` for ``ssrc_count`` streams, this one among them."""

    def on_nack(self, lost: int) -> None:
        """The subscriber asked for ``lost`` packets again."""

    def on_retransmit(self, served: bool) -> None:
        """One NACKed packet was (``served``) or was not in the history."""


class SenderTap:
    """Hooks one subscriber-side :class:`RTCRtpSender`; create right after ``addTransceiver``.

    Touches: ``_run_rtp`` (replaced per instance by an idle loop: no track is read, no encoder
    ever created), ``_next_encoded_frame`` (replaced by a counter that refuses to encode),
    ``send`` (wrapped: hand a :class:`SenderPort` to the SFU once started),
    ``_handle_rtcp_packet`` (wrapped: PLI/FIR, REMB and NACK seen before aiortc's handling),
    ``_retransmit`` (wrapped: count served retransmissions), ``__rtp_started``/``__rtp_exited``
    (the events ``stop()`` waits on, set by the idle loop).
    """

    def __init__(self, sender: RTCRtpSender, events: SenderEvents, probe: TranscodingProbe):
        _require(sender, _SENDER_ATTRS)
        s: Any = sender
        self._sender = s
        self._events = events
        self._probe = probe
        self._port: SenderPort | None = None
        self._original_send = s.send
        self._original_rtcp = s._handle_rtcp_packet
        self._original_retransmit = s._retransmit
        s._run_rtp = self._idle_rtp
        s._next_encoded_frame = self._refuse_encode
        s.send = self._send
        s._handle_rtcp_packet = self._handle_rtcp_packet
        s._retransmit = self._retransmit

    @property
    def port(self) -> SenderPort | None:
        return self._port

    @property
    def ssrc(self) -> int:
        ssrc: int = self._sender._ssrc
        return ssrc

    def set_msid(self, stream_id: str, track_id: str) -> None:
        """Set the ``a=msid`` aiortc writes for this sender (``_stream_id``, ``_track_id``)."""
        self._sender._stream_id = stream_id
        self._sender._track_id = track_id

    async def _idle_rtp(self, codec: Any) -> None:
        self._sender._RTCRtpSender__rtp_started.set()
        try:
            # Media is pushed by the SFU through SenderPort; this loop only has to exist
            # (stop() cancels it and waits for __rtp_exited).
            await asyncio.get_running_loop().create_future()
        finally:
            self._sender._RTCRtpSender__rtp_exited.set()

    async def _refuse_encode(self, codec: Any) -> None:
        self._probe.encoder_calls += 1
        raise AiortcInternalsError("the SFU's sender was asked to encode a frame")

    async def _send(self, parameters: Any) -> None:
        await self._original_send(parameters)
        if self._port is None:
            self._port = SenderPort(self._sender, parameters)
            await self._events.on_sender_started(self._port)

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        if isinstance(packet, _RtcpPsfbPacket):
            if packet.fmt in (_PSFB_PLI, _PSFB_FIR):
                await self._events.on_keyframe_request()
            elif packet.fmt == _PSFB_APP:
                try:
                    bitrate, ssrcs = _unpack_remb_fci(packet.fci)
                except ValueError:
                    pass  # application feedback that is not REMB: nothing for us
                else:
                    if self._sender._ssrc in ssrcs:
                        await self._events.on_remb(bitrate, len(ssrcs))
        elif isinstance(packet, _RtcpRtpfbPacket) and packet.fmt == _RTPFB_NACK:
            self._events.on_nack(len(packet.lost))
        await self._original_rtcp(packet)

    async def _retransmit(self, sequence_number: int) -> None:
        history = self._sender._RTCRtpSender__rtp_history
        slot = sequence_number % RTP_HISTORY_SIZE
        kept = history.get(slot)
        if isinstance(kept, bytes):
            # Sent by the fast path: aiortc's retransmission reads an RtpPacket from the slot,
            # whether or not it holds the packet asked for (a NACK for an old packet finds a
            # newer one there), so the slot always gets the parsed packet.
            kept = history[slot] = _RtpPacket.parse(
                kept, self._sender._RTCRtpSender__rtp_header_extensions_map
            )
        self._events.on_retransmit(kept is not None and kept.sequence_number == sequence_number)
        await self._original_retransmit(sequence_number)


# ---------------------------------------------------------------------------------------------
# DTLS role of the answers the SFU writes.
# ---------------------------------------------------------------------------------------------


def answer_as_dtls_server(pc: RTCPeerConnection) -> None:
    """Make the next ``createAnswer`` say ``a=setup:passive`` (the SFU is the DTLS server).

    Touches ``RTCDtlsTransport._role`` (read, ``"auto"`` until a role is known) and
    ``_set_role``. aiortc answers an ``actpass`` offer with ``active`` and so becomes the DTLS
    client; its DTLS stack offers only ``ECDHE-ECDSA`` ciphers, which a server with an RSA
    certificate (GStreamer webrtcbin's default) cannot pick: ``no shared cipher``. As the server
    aiortc chooses with its own ECDSA key, and any client certificate works (RFC 5763 section 5
    lets the answerer take either role). Call after ``setRemoteDescription`` of an offer that
    says ``a=setup:actpass``: a ``passive`` offer leaves the role ``"auto"`` too, but there the
    SFU must be the client (``sfu.sdp_info.MediaSection.setup`` tells them apart).
    """
    for transceiver in pc.getTransceivers():
        for transport in (transceiver.receiver.transport, transceiver.sender.transport):
            t: Any = transport
            _require(t, ("_role",))
            if t._role == "auto":
                t._set_role("server")


def remote_udp_candidate_count(pc: RTCPeerConnection) -> int:
    """Remote UDP candidates the connection's ICE transports know (public
    ``RTCIceTransport.getRemoteCandidates``: trickled ones and those of the remote SDP). TCP
    ones do not count: the SFU cannot use them (see ``Sfu.add_candidate``)."""
    transports = {id(t.sender.transport.transport): t.sender.transport.transport for t in pc.getTransceivers()}
    return sum(
        1 for ice in transports.values() for c in ice.getRemoteCandidates() if c.protocol.lower() == "udp"
    )


def failure_reason(pc: RTCPeerConnection) -> str:
    """Which layer failed a ``failed`` connection, in words an operator can act on.

    Public API only (``RTCIceTransport.state``, ``RTCDtlsTransport.state``). aiortc starts DTLS
    once ``RTCIceTransport.start`` returns, *even when ICE failed* (DTLS then fails at once), so
    ICE is looked at first: ICE failed before DTLS ever connected means no candidate pair
    worked; ICE failed after DTLS connected means the path died later (consent freshness,
    RFC 7675: the peer stopped answering for ~30 s). Only with ICE intact is a DTLS failure
    the handshake's own.
    """
    transports = {id(t.sender.transport): t.sender.transport for t in pc.getTransceivers()}
    if pc.sctp is not None:
        transports[id(pc.sctp.transport)] = pc.sctp.transport
    for dtls in transports.values():
        if dtls.transport.state == "failed":
            if dtls.state in ("new", "connecting", "failed"):
                return "ICE failed: no candidate pair answered"
            return "ICE consent expired: the path stopped answering"
    if any(dtls.state == "failed" for dtls in transports.values()):
        return "the DTLS handshake failed"
    return "the connection failed (ICE or DTLS)"


# ---------------------------------------------------------------------------------------------
# ICE: host addresses and port range.
# ---------------------------------------------------------------------------------------------

#: aioice.ice as an untyped object, so its module global can be replaced.
_aioice_ice_module: Any = _aioice_ice
_original_get_host_addresses: Callable[[bool, bool], list[str]] = _aioice_ice.get_host_addresses


def set_process_host_addresses(addresses: tuple[str, ...] | None) -> None:
    """Restrict host candidate gathering of *every* aioice connection in this process.

    Touches ``aioice.ice.get_host_addresses`` (the module global ``gather_candidates`` calls).
    For processes that create aiortc peers of their own (tests, the benchmark's clients) and
    must not gather on other interfaces. ``None`` restores aioice's discovery. Note that
    aioice's own discovery skips 127.0.0.1; naming it here is the way to get loopback
    candidates. The SFU itself does not depend on this: see :func:`configure_ice`.
    """
    if addresses is None:
        _aioice_ice_module.get_host_addresses = _original_get_host_addresses
        return
    chosen = tuple(addresses)

    def restricted(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (use_ipv6 if ":" in a else use_ipv4)]

    _aioice_ice_module.get_host_addresses = restricted


def _ice_connections(pc: RTCPeerConnection) -> list[Any]:
    """The aioice connections of ``pc`` (``RTCIceGatherer._connection``)."""
    gatherers: list[Any] = [
        t.receiver.transport.transport.iceGatherer for t in pc.getTransceivers()
    ]
    if pc.sctp is not None:
        gatherers.append(pc.sctp.transport.transport.iceGatherer)
    seen: dict[int, Any] = {}
    for gatherer in gatherers:
        connection = gatherer._connection
        seen[id(connection)] = connection
    return list(seen.values())


def configure_ice(
    pc: RTCPeerConnection, host_addresses: tuple[str, ...], port_range: tuple[int, int] | None
) -> None:
    """Make every not-yet-gathered ICE connection of ``pc`` use our addresses and ports.

    Call before ``setLocalDescription`` (which gathers). Touches, per aioice ``Connection``
    instance, ``get_component_candidates``: its ``addresses`` argument is replaced by
    ``host_addresses`` (unless empty), and with a port range host sockets are bound by us.
    Per instance, so several SFUs with different settings can share a process. Also makes
    the connections' consent checks tolerate long round trips (:func:`patient_consent`).
    """
    for connection in _ice_connections(pc):
        if getattr(connection, "_sfu_ice_configured", False):
            continue
        if connection._local_candidates_start:
            raise AiortcInternalsError("ICE gathering started before configure_ice()")
        connection._sfu_ice_configured = True
        original = connection.get_component_candidates

        async def get_component_candidates(
            component: int,
            addresses: list[str],
            timeout: int = 5,  # noqa: ASYNC109 - aioice's signature, which we stand in for
            *,
            _original: Any = original,
            _connection: Any = connection,
        ) -> list[Any]:
            chosen = list(host_addresses) or addresses
            if port_range is None:
                result: list[Any] = await _original(
                    component=component, addresses=chosen, timeout=timeout
                )
                return result
            return await _gather_in_port_range(
                _connection, _original, component, chosen, port_range, timeout
            )

        connection.get_component_candidates = get_component_candidates
    patient_consent(pc)


# ---------------------------------------------------------------------------------------------
# ICE consent freshness (RFC 7675) on long round trips.
# ---------------------------------------------------------------------------------------------

#: RFC 7675 section 5.1: consent expires 30 s after the last answered check.
CONSENT_EXPIRY = 30.0
#: Seconds between consent checks, randomised by ±20 % (aioice's own interval).
CONSENT_INTERVAL = 5.0
#: Retransmissions of each check (RTO 0.5 s doubling): answers up to 7.5 s late still count.
CONSENT_RETRANSMISSIONS = 3


def patient_consent(pc: RTCPeerConnection) -> None:
    """Replace aioice's consent checks on every ICE connection of ``pc`` by RFC 7675's rule.

    aioice 0.13 sends each consent check once and counts it lost when no answer came within
    0.5 s; six lost checks in a row (~30 s) close the connection. On a link whose round trip
    exceeds 0.5 s (a 400 ms RTT mobile link, a starved peer) every check is "lost", so a healthy
    connection dies after ~30 s — aiortc then reports it "closed" — and comes back, to die again.
    Here each check is retransmitted (0.5, 1, 2, 4 s) and consent expires only when no check at
    all was answered for :data:`CONSENT_EXPIRY` seconds. Touches, per aioice ``Connection``
    instance, ``query_consent`` (looked up when ``connect()`` completes: call this before the
    connection is established) and reads ``_nominated``, ``remote_password``,
    ``_query_consent_task``.
    """
    for connection in _ice_connections(pc):
        if getattr(connection, "_sfu_patient_consent", False):
            continue
        _require(connection, ("_nominated", "remote_password", "_query_consent_task"))
        connection._sfu_patient_consent = True

        async def query_consent(_connection: Any = connection) -> None:
            await _patient_consent(_connection)

        connection.query_consent = query_consent


async def _patient_consent(connection: Any) -> None:
    loop = asyncio.get_running_loop()
    answered_at = loop.time()
    while True:
        await asyncio.sleep(CONSENT_INTERVAL * random.uniform(0.8, 1.2))
        for pair in list(connection._nominated.values()):
            request = connection.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(
                    request,
                    pair.remote_addr,
                    integrity_key=connection.remote_password.encode("utf8"),
                    retransmissions=CONSENT_RETRANSMISSIONS,
                )
            except _aioice_stun.TransactionError:
                continue
            answered_at = loop.time()
        if loop.time() - answered_at >= CONSENT_EXPIRY:
            logger.info("ICE consent expired: no consent check answered for %.0f s", CONSENT_EXPIRY)
            connection._query_consent_task = None
            await connection.close()
            return


def _bind_in_range(address: str, port_range: tuple[int, int]) -> socket.socket | None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    low, high = port_range
    count = high - low + 1
    start = random.randrange(count)
    for i in range(count):
        port = low + (start + i) % count
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, port))
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        return sock
    return None


async def _gather_in_port_range(
    connection: Any,
    original: Any,
    component: int,
    addresses: list[str],
    port_range: tuple[int, int],
    query_timeout: int,
) -> list[Any]:
    """Host (and STUN server-reflexive) candidates on sockets bound inside ``port_range``.

    Mirrors aioice's ``get_component_candidates`` for host candidates, with our own sockets;
    TURN relays are still gathered by aioice (their ports live on the TURN server). Touches
    ``StunProtocol``, ``Candidate``, ``candidate_foundation``/``candidate_priority``,
    ``server_reflexive_candidate``, ``Connection._protocols`` and ``Connection.stun_server``.
    """
    loop = asyncio.get_running_loop()
    candidates: list[Any] = []
    protocols: list[Any] = []
    for address in addresses:
        sock = _bind_in_range(address, port_range)
        if sock is None:
            logger.warning("no free UDP port in %s on %s", port_range, address)
            continue
        _, protocol = await loop.create_datagram_endpoint(
            lambda: _aioice_ice.StunProtocol(connection), sock=sock
        )
        host, port = sock.getsockname()[:2]
        protocol.local_candidate = _Candidate(
            foundation=_aioice_candidate.candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=_aioice_candidate.candidate_priority(component, "host"),
            host=host,
            port=port,
            type="host",
        )
        candidates.append(protocol.local_candidate)
        protocols.append(protocol)
    connection._protocols += protocols
    if connection.stun_server:
        for protocol in protocols:
            if ":" in protocol.local_candidate.host:
                continue
            try:
                async with asyncio.timeout(query_timeout):
                    srflx, _ = await _aioice_ice.server_reflexive_candidate(
                        protocol, connection.stun_server
                    )
            except (TimeoutError, OSError, _aioice_stun.TransactionError) as exc:
                logger.info("STUN query from %s failed: %s", protocol.local_candidate.host, exc)
            else:
                candidates.append(srflx)
    relays: list[Any] = await original(component=component, addresses=[], timeout=query_timeout)
    return candidates + relays


# ---------------------------------------------------------------------------------------------
# Self-test.
# ---------------------------------------------------------------------------------------------


async def verify_internals() -> None:
    """Create a throwaway peer connection and check every per-instance internal we touch.

    Raises :class:`AiortcInternalsError` naming what moved. Used by the hooks test; the SFU
    performs the same checks on each object it hooks.
    """
    check_static_internals()
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video", direction="sendrecv")
        _require(transceiver.receiver, _RECEIVER_ATTRS)
        _require(transceiver.sender, _SENDER_ATTRS)
        _require(transceiver.sender.transport, ("_send_rtp",))
        connections = _ice_connections(pc)
        if not connections:
            raise AiortcInternalsError("no aioice connection found behind the peer connection")
        _require(connections[0], ("_local_candidates_start", "_protocols", "stun_server"))
    finally:
        await pc.close()
