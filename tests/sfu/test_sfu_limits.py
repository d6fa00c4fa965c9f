"""Track limits and the remote-candidate policy, on a real SFU with real aiortc peers."""

from __future__ import annotations

from aiortc import AudioStreamTrack, RTCPeerConnection, VideoStreamTrack

from sfu.config import SfuConfig
from sfu.sdp_info import parse_session
from tests.sfu.sfu_testpeers import LOOPBACK, LOOPBACK_PEERS, SfuEnv, client_configuration
from tests.sfu.test_sfu_errors import raises


async def offer_with(audio: int, video: int) -> str:
    """A real aiortc publisher offer sending ``audio`` + ``video`` tracks."""
    pc = RTCPeerConnection(client_configuration())
    try:
        for _ in range(audio):
            pc.addTransceiver(AudioStreamTrack(), "sendonly")
        for _ in range(video):
            pc.addTransceiver(VideoStreamTrack(), "sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


async def test_an_offer_with_too_many_tracks_is_refused_and_the_room_keeps_its_media(
    env: SfuEnv,
) -> None:
    """Issue 14 finding 4: one publisher offering many m-lines cut off every subscriber."""
    subscriber = await env.subscriber("bob")
    await env.sfu.join("room", "mallory")
    error = await raises("too-many-tracks", env.sfu.publish("room", "mallory", await offer_with(0, 5)))
    assert "5 video tracks" in str(error)
    await raises("too-many-tracks", env.sfu.publish("room", "mallory", await offer_with(5, 1)))
    # Nothing of it was applied: no connection, no track, nothing told to anyone.
    stats = env.sfu.stats()
    assert (stats["tracks"], stats["peer_connections"]) == (0, 0)
    assert subscriber.messages == []

    # At the limit is fine, and an ordinary publisher reaches the subscriber as before.
    await env.sfu.publish("room", "mallory", await offer_with(4, 4))
    assert env.sfu.stats()["tracks"] == 8
    publisher = env.publisher("alice", audio=False)
    await env.sfu.join("room", "alice")
    await publisher.publish()
    await subscriber.wait_for(lambda: any(r.frames > 3 for r in subscriber.received.values()), 20)


async def test_the_room_track_limit_counts_every_other_participant() -> None:
    env = SfuEnv(SfuConfig(host_addresses=LOOPBACK, ice_allow_peers=LOOPBACK_PEERS, max_tracks_per_room=3))
    try:
        for peer in ("alice", "carol"):
            await env.sfu.join("room", peer, subscribe=False)
        await env.sfu.publish("room", "alice", await offer_with(1, 1))
        error = await raises("too-many-tracks", env.sfu.publish("room", "carol", await offer_with(1, 1)))
        assert "4 tracks" in str(error)
        await env.sfu.publish("room", "carol", await offer_with(1, 0))
        # A renegotiation replaces the publisher's own tracks: alice may keep her two.
        await env.sfu.publish("room", "alice", await offer_with(1, 1))
        assert env.sfu.stats()["tracks"] == 3
        await env.sfu.leave("room", "alice")
        await env.sfu.publish("room", "carol", await offer_with(1, 2))
        assert env.sfu.stats()["tracks"] == 3
    finally:
        await env.close()


async def test_refused_candidates_never_reach_aiortc() -> None:
    """Default policy (no allowed range): loopback and private candidates are refused, in the
    offer (dropped) and trickled (``candidate-refused``); the client can still connect through
    the address its checks come from (a peer-reflexive candidate)."""
    env = SfuEnv(SfuConfig(host_addresses=LOOPBACK))
    try:
        subscriber = await env.subscriber("bob")
        publisher = env.publisher("alice", audio=False)
        await env.sfu.join("room", "alice")
        await publisher.publish()
        offer = publisher.pc.localDescription.sdp
        in_offer = sum(line.startswith("a=candidate:") for line in offer.split("\r\n"))
        assert in_offer >= 1
        assert env.sfu.stats()["candidates_refused"] == in_offer

        mid = parse_session(offer).sections[0].mid
        for address in ("10.0.0.5", "127.0.0.1", "169.254.169.254", "4f2e0f5c-8b84-4c4a-9a5e.local"):
            candidate = {"candidate": f"candidate:1 1 udp 2130706431 {address} 9 typ host", "sdpMid": mid}
            error = await raises("candidate-refused", env.sfu.add_candidate("room", "alice", "publisher", candidate))
            assert address in str(error)
        assert env.sfu.stats()["candidates_refused"] == in_offer + 4
        # (Public addresses pass: tests/sfu/test_sfu_candidate_policy.py. None is tried here: this
        # machine's network is loopback only.)

        await subscriber.wait_for(lambda: any(r.frames > 3 for r in subscriber.received.values()), 20)
    finally:
        await env.close()
