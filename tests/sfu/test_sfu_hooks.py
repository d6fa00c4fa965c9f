"""The aiortc/aioice internals the SFU relies on: present, pinned, and actually working.

If aiortc or aioice is upgraded, this module fails loudly: either at import of
``sfu.aiortc_hooks`` (version pin, static shape check), in :func:`verify_internals`, or in the
loopback test below, which proves the hooks still carry media without decoding or encoding.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import re

import pytest
from aiortc import RTCRtpSender

from sfu import aiortc_hooks
from sfu.aiortc_hooks import AiortcInternalsError, ReceiverTap, TranscodingProbe
from sfu.config import SfuConfig
from tests.sfu.sfu_testpeers import LOOPBACK, LOOPBACK_PEERS, TIME_SCALE, SfuEnv

CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ (\S+)")


def candidates(sdp: str) -> list[tuple[str, int, str]]:
    found = []
    for line in sdp.split("\r\n"):
        match = CANDIDATE.match(line)
        if match:
            found.append((match.group(1), int(match.group(2)), match.group(3)))
    return found


def test_versions_are_the_pinned_ones() -> None:
    for package, version in aiortc_hooks.REQUIRED_VERSIONS.items():
        assert importlib.metadata.version(package) == version


async def test_every_internal_is_where_the_hooks_expect_it() -> None:
    await aiortc_hooks.verify_internals()


def test_a_moved_internal_is_reported_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpSender, "_retransmit")
    with pytest.raises(AiortcInternalsError, match="_retransmit"):
        aiortc_hooks.check_static_internals()


def test_hooking_an_object_without_the_internals_fails_loudly() -> None:
    class NotAReceiver:
        pass

    with pytest.raises(AiortcInternalsError, match="jitter_buffer"):
        ReceiverTap(NotAReceiver(), object(), TranscodingProbe())  # type: ignore[arg-type]


async def test_forwarding_path_never_decodes_nor_encodes(env: SfuEnv) -> None:
    subscriber = await env.subscriber("bob")
    publisher = env.publisher("alice")
    await env.sfu.join("room", "alice")
    await publisher.publish()
    await subscriber.wait_for(
        lambda: (
            len(subscriber.received) == 2
            and all(r.frames >= 30 for r in subscriber.received.values())
        ),
        20,
    )
    stats = env.sfu.stats()
    probe = stats["transcoding"]
    assert probe["frames_to_decoder"] == 0, "an SFU receiver handed a frame to its decoder"
    assert probe["encoder_calls"] == 0, "an SFU sender tried to encode"
    assert probe["packets_past_tap"] >= stats["packets_in"] > 0
    assert all(t["packets_forwarded"] > 0 for t in stats["per_track"])
    # Sender reports carry the forwarded counters (lip sync needs them): the subscriber got
    # one per stream within a few RTCP intervals (0.5-1.5 s each).
    async with asyncio.timeout(10 * TIME_SCALE):
        while True:
            report = await subscriber.pc.getStats()
            sent = [s.packetsSent for s in report.values() if s.type == "remote-outbound-rtp"]
            if len(sent) == 2:
                break
            await asyncio.sleep(0.1)
    assert all(count > 0 for count in sent)


async def test_sfu_candidates_are_loopback_only_without_stun(env: SfuEnv) -> None:
    publisher = env.publisher("alice")
    await env.sfu.join("room", "alice")
    await publisher.publish()
    answer = publisher.pc.remoteDescription.sdp
    found = candidates(answer)
    assert found
    assert {(host, kind) for host, _, kind in found} == {("127.0.0.1", "host")}


async def test_port_range_and_announced_address() -> None:
    config = SfuConfig(host_addresses=LOOPBACK, ice_allow_peers=LOOPBACK_PEERS, port_range=(47100, 47199), announce_ip="192.0.2.10")
    env = SfuEnv(config)
    try:
        publisher = env.publisher("alice", audio=False)
        await env.sfu.join("room", "alice")
        answer = await env.sfu.publish("room", "alice", await _offer(publisher.pc))
        found = candidates(answer)
        assert found
        assert all(host == "192.0.2.10" and 47100 <= port <= 47199 for host, port, _ in found)
        assert "c=IN IP4 192.0.2.10" in answer
    finally:
        await env.close()


async def test_port_range_connects_media() -> None:
    env = SfuEnv(SfuConfig(host_addresses=LOOPBACK, ice_allow_peers=LOOPBACK_PEERS, port_range=(47200, 47299)))
    try:
        subscriber = await env.subscriber("bob")
        publisher = env.publisher("alice", audio=False)
        await env.sfu.join("room", "alice")
        await publisher.publish()
        await subscriber.wait_for(
            lambda: any(r.frames > 5 for r in subscriber.received.values()), 20
        )
        offer = subscriber.offers()[0]
        assert all(47200 <= port <= 47299 for _, port, _ in candidates(offer))
    finally:
        await env.close()


async def _offer(pc: object) -> str:
    await pc.setLocalDescription(await pc.createOffer())  # type: ignore[attr-defined]
    sdp: str = pc.localDescription.sdp  # type: ignore[attr-defined]
    return sdp


async def test_failure_reason_names_ice_when_no_pair_can_answer() -> None:
    """Two real aiortc peers; the answer carries no candidate and ends candidates, so the
    offerer's checks have nothing to try: its ICE fails at once, and the reason says ICE (the
    DTLS transport was started after ICE gave up, which once read as "consent expired")."""
    from aiortc import RTCPeerConnection

    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        offerer.addTransceiver("audio", direction="sendrecv")
        failed = asyncio.Event()
        offerer.on("connectionstatechange", lambda: failed.set() if offerer.connectionState == "failed" else None)
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        lines = [line for line in answerer.localDescription.sdp.split("\r\n") if not line.startswith("a=candidate:")]
        answer = "\r\n".join(lines).replace("a=end-of-candidates\r\n", "")
        answer = answer.replace("a=ice-ufrag:", "a=end-of-candidates\r\na=ice-ufrag:")
        await answerer.close()  # its checks must not reach the offerer as peer-reflexive pairs
        from aiortc import RTCSessionDescription

        await offerer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.wait_for(failed.wait(), 10 * TIME_SCALE)
        assert aiortc_hooks.failure_reason(offerer) == "ICE failed: no candidate pair answered"
    finally:
        await offerer.close()
        await answerer.close()
