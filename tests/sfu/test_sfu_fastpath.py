"""The send fast path sends what aiortc would, and keeps NACK history and sender reports right.

Unit tests check :class:`sfu.fastpath.HeaderTemplate` against aiortc's own serialization; the
integration test sends through a real DTLS/SRTP leg whose every 5th media packet a UDP relay
drops, and checks that the receiver's NACKs are served from the fast path's history (over RTX)
and that its sender reports count exactly the packets and payload octets sent.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pylibsrtp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtcrtpsender import RTP_HISTORY_SIZE
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from sfu.aiortc_hooks import DirectProtect, ReceiverTap, SenderPort, SenderTap, TranscodingProbe
from sfu.fastpath import HeaderTemplate, sequence_number_of
from tests.conftest import PATIENCE, UNIT, eventually
from tests.sfu.sfu_lossy_udp import EveryNth, LossyRelay
from tests.sfu.sfu_testpeers import force_codec
from tests.sfu.test_sfu_loss import video_payload_types

_URIS = {
    "mid": "urn:ietf:params:rtp-hdrext:sdes:mid",
    "abs": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "level": "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
}


def _map(**ids: int) -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=i, uri=_URIS[name]) for name, i in ids.items()
            ]
        )
    )
    return extensions


def _aiortc_serializer(ext_map: HeaderExtensionsMap, payload_type: int, ssrc: int, mid: str) -> Any:
    def serialize(
        marker: int, seq: int, ts: int, abs_send_time: int, level: tuple[bool, int] | None,
        payload: bytes = b"",
    ) -> bytes:
        packet = RtpPacket(
            payload_type=payload_type, marker=marker, sequence_number=seq, timestamp=ts,
            ssrc=ssrc, payload=payload,
        )
        packet.extensions.mid = mid
        packet.extensions.abs_send_time = abs_send_time
        packet.extensions.audio_level = level
        data: bytes = packet.serialize(ext_map)
        return data

    return serialize


def test_template_renders_exactly_what_aiortc_serializes() -> None:
    rng = random.Random(7)
    layouts = [
        _map(mid=1, abs=3),  # Chromium-like video leg
        _map(mid=4, abs=2, level=1),  # audio leg
        _map(abs=14),  # no MID
        _map(),  # no extensions at all
        _map(mid=9, level=10),  # no abs-send-time
    ]
    for ext_map in layouts:
        serialize = _aiortc_serializer(ext_map, 97, 0xDEADBEEF, "12")
        for with_level in (False, True):
            template = HeaderTemplate.learn(serialize, 97, with_level=with_level)
            assert template is not None
            for _ in range(200):
                marker = rng.randrange(2)
                seq = rng.randrange(1 << 16)
                ts = rng.randrange(1 << 32)
                abs_time = rng.randrange(1 << 24)
                level = (bool(rng.randrange(2)), rng.randrange(128)) if with_level else None
                payload = rng.randbytes(rng.randrange(1, 1200))
                expected = serialize(marker, seq, ts, abs_time, level, payload)
                got = template.render(marker, seq, ts, abs_time, level, payload)
                assert got == expected
                assert sequence_number_of(got) == seq


def _srtp_session(key: bytes) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    return pylibsrtp.Session(policy=policy)


def test_direct_protect_gives_pylibsrtp_bytes_exactly() -> None:
    """Two sessions with one key: the direct call and pylibsrtp's ``protect`` agree on every
    packet (sizes from a bare header to the largest that fits, several SSRCs and sequences)."""
    rng = random.Random(7)
    key = bytes(rng.randrange(256) for _ in range(30))
    reference, ours = _srtp_session(key), _srtp_session(key)
    direct = DirectProtect.of(ours)
    assert direct is not None
    for index, size in enumerate([0, 1, 100, 1100, 1200, 1500 - pylibsrtp.SRTP_MAX_TRAILER_LEN - 12]):
        for ssrc in (1, 0xDEADBEEF):
            packet = RtpPacket(
                payload_type=96, sequence_number=1000 + index, timestamp=90 * index, ssrc=ssrc,
                payload=bytes(rng.randrange(256) for _ in range(size)),
            ).serialize()
            assert direct.protect(packet) == reference.protect(packet)


def test_direct_protect_refuses_what_pylibsrtp_refuses() -> None:
    direct = DirectProtect.of(_srtp_session(bytes(30)))
    assert direct is not None
    with pytest.raises(ValueError, match="too long"):
        direct.protect(bytes([0x80, 96]) + bytes(1498))
    assert DirectProtect.of(object()) is None


def test_template_refuses_a_layout_it_cannot_patch() -> None:
    def varying(marker: int, seq: int, ts: int, abs_time: int, level: Any) -> bytes:
        # A header whose length depends on a value (like a CSRC list would): not patchable.
        return bytes([0x80, 96]) + seq.to_bytes(2, "big") + bytes(8) + bytes(seq % 3)

    def with_padding(marker: int, seq: int, ts: int, abs_time: int, level: Any) -> bytes:
        return bytes([0xA0, 96]) + seq.to_bytes(2, "big") + bytes(8)

    def inconsistent(marker: int, seq: int, ts: int, abs_time: int, level: Any) -> bytes:
        # The probes look patchable but other values are not reproduced: refused by the proof.
        return bytes([0x80, (marker << 7) | 96]) + seq.to_bytes(2, "big") + bytes(8) + bytes(
            [seq & 1]
        )

    for serialize in (varying, with_padding, inconsistent):
        assert HeaderTemplate.learn(serialize, 96, with_level=False) is None


class _SenderEvents:
    def __init__(self) -> None:
        self.port: SenderPort | None = None
        self.served = 0
        self.missed = 0
        self.started = asyncio.Event()

    async def on_sender_started(self, port: SenderPort) -> None:
        self.port = port
        self.started.set()

    async def on_keyframe_request(self) -> None:
        pass

    async def on_remb(self, bitrate: int, ssrc_count: int) -> None:
        pass

    def on_nack(self, lost: int) -> None:
        pass

    def on_retransmit(self, served: bool) -> None:
        if served:
            self.served += 1
        else:
            self.missed += 1


class _Received:
    """The far end's packets as they arrive (before aiortc's RTX unwrapping): nothing decoded."""

    def __init__(self) -> None:
        self.packets: list[tuple[int, int, bytes]] = []

    async def on_rtp(self, packet: Any) -> None:
        self.packets.append((packet.payload_type, packet.sequence_number, packet.payload))

    def on_receiver_started(self, info: Any) -> None:
        pass

    def on_upstream_estimate(self, bitrate: int) -> int:
        return bitrate

    def on_sender_report(self, report: Any) -> None:
        pass


async def test_fast_path_serves_nacks_over_rtx_and_counts_sender_reports() -> None:
    config = RTCConfiguration(iceServers=[])
    sender_pc, receiver_pc = RTCPeerConnection(config), RTCPeerConnection(config)
    drop = EveryNth(payload_type=-1, n=5)
    relay = LossyRelay(to_client=drop)
    await relay.start()
    probe = TranscodingProbe()
    events = _SenderEvents()
    received = _Received()
    try:
        transceiver = sender_pc.addTransceiver("video", direction="sendonly")
        force_codec(transceiver, "video", "VP8")
        tap = SenderTap(transceiver.sender, events, probe)

        @receiver_pc.on("track")
        def on_track(track: Any) -> None:
            receiver = next(
                t.receiver for t in receiver_pc.getTransceivers() if t.receiver.track is track
            )
            ReceiverTap(receiver, received, probe)

        await sender_pc.setLocalDescription(await sender_pc.createOffer())
        offer = relay.sdp_from_sfu(sender_pc.localDescription.sdp)
        await receiver_pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
        answer = relay.sdp_from_client(receiver_pc.localDescription.sdp)
        await sender_pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        async with asyncio.timeout(PATIENCE):
            await events.started.wait()
        port = events.port
        assert port is not None
        drop.payload_type = port.payload_type
        rtx_type = video_payload_types(answer)[1]

        rng = random.Random(3)
        count, first_seq = 62, 40000  # the last dropped packet is followed by two more
        sent: dict[int, bytes] = {}
        octets = 0
        for i in range(count):
            seq = first_seq + i
            # VP8 descriptor (S bit, partition 0) + a keyframe header byte, then noise.
            payload = bytes([0x10, 0x00]) + rng.randbytes(rng.randrange(100, 1000))
            wire = port.send_now(
                int(i % 3 == 2), seq, 90000 + (i // 3) * 3000, payload, 0, None, i << 8,
                (3_900_000_000 + i) << 32,
            )
            assert wire is not None, "the fast path refused a plain packet"
            sent[seq] = payload
            octets += len(payload)
            # Paced like a media source; the far end reads, NACKs and gets repairs meanwhile.
            await asyncio.sleep(UNIT / 10)

        def repaired() -> set[int]:
            got = set()
            for payload_type, seq, payload in received.packets:
                if payload_type == port.payload_type:
                    got.add(seq)
                elif len(payload) > 2:  # RTX: original sequence number, then the payload
                    original = int.from_bytes(payload[:2], "big")
                    assert payload[2:] == sent[original]
                    got.add(original)
            return got

        await eventually(lambda: repaired() >= set(sent), what="every packet, repaired by RTX")
        assert drop.dropped >= count // 5 - 1
        assert events.served >= 1
        assert port.slow_sends == 0
        assert relay.to_client_types.get(rtx_type, 0) >= 1, "no retransmission over RTX"

        async def remote_outbound() -> Any:
            stats = await receiver_pc.getStats()
            return next(
                (s for s in stats.values() if s.type == "remote-outbound-rtp"), None
            )

        async with asyncio.timeout(PATIENCE):
            while True:
                report = await remote_outbound()
                if report is not None and report.packetsSent == count:
                    break
                await asyncio.sleep(UNIT)
        assert report.bytesSent == octets

        # A NACK for a sequence number whose history slot now holds another packet sent by the
        # fast path (bytes): a miss, not aiortc's AttributeError on bytes (found under loss in
        # the impaired-network test once the fast path met NACKs for old packets).
        stale = first_seq + count - 1 - RTP_HISTORY_SIZE
        missed = events.missed
        await tap._retransmit(stale)
        assert events.missed == missed + 1
    finally:
        relay.close()
        await sender_pc.close()
        await receiver_pc.close()
