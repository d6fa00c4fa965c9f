"""Simulcast hooks on real aiortc objects, without sockets: MID-first routing, per-SSRC NACKs."""

from __future__ import annotations

from types import SimpleNamespace

from aiortc.rtcdtlstransport import RtpRouter
from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import RtpPacket

from sfu.aiortc_hooks import PerSsrcNack, route_by_mid


def packet(ssrc: int, seq: int, pt: int = 96, mid: str | None = None) -> RtpPacket:
    p = RtpPacket(payload_type=pt, sequence_number=seq, ssrc=ssrc)
    p.extensions.mid = mid
    return p


def test_unknown_ssrcs_are_routed_by_mid_and_remembered() -> None:
    router = RtpRouter()
    camera, screen = object(), object()
    # Two video m-lines with the same payload type and no a=ssrc (rid simulcast).
    router.register_receiver(camera, ssrcs=[], payload_types=[96, 97], mid="1")  # type: ignore[arg-type]
    router.register_receiver(screen, ssrcs=[], payload_types=[96, 97], mid="2")  # type: ignore[arg-type]
    assert router.route_rtp(packet(1111, 1, mid="1")) is None  # aiortc alone drops them
    route_by_mid(SimpleNamespace(_rtp_router=router))
    route_by_mid(SimpleNamespace(_rtp_router=router))  # idempotent
    assert router.route_rtp(packet(1111, 1, mid="1")) is camera
    assert router.route_rtp(packet(2222, 1, mid="2")) is screen
    assert router.route_rtp(packet(3333, 1, pt=97, mid="1")) is camera  # a layer's RTX
    # MID is no longer sent once the SSRC is acknowledged: the learnt SSRC still routes.
    assert router.route_rtp(packet(1111, 2)) is camera
    assert router.route_rtp(packet(2222, 2)) is screen
    assert router.route_rtp(packet(4444, 1, mid="9")) is None  # unknown mid, ambiguous type


def test_nack_generation_is_per_ssrc() -> None:
    # aiortc's single generator takes interleaved layers for losses (the bug being fixed).
    single = NackGenerator()
    single.add(packet(1, 100))
    assert single.add(packet(2, 230))
    nack = PerSsrcNack()
    # Three interleaved layers with unrelated sequence numbers: no gap, no NACK.
    for i in range(50):
        for ssrc, base in ((1, 100), (2, 30000), (3, 60000)):
            assert not nack.add(packet(ssrc, (base + i) % 65536))
    assert nack.missing == set()
    # A real loss on layer 2 is seen, and only there.
    assert nack.add(packet(2, 30052))
    assert nack.missing == {30050, 30051}
    assert not nack.add(packet(1, 150))
    assert nack.missing == set()
