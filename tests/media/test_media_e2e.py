"""Media end to end through the signaling service: SDK signaling, the server's SFU, aiortc peers.

Each test starts a real server (``build_app`` with ``sfu=True``) on loopback. Participants use
the Python SDK for every message (publish, publish-answer, subscriber-offer, subscriber-answer,
candidate, track-*) and aiortc for media; subscribers decode what the SFU forwards and read the
frame number drawn into each picture, so delivery is counted frame by frame whatever the latency.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from signaling.client import PeerLeft, PeerReconnecting, PeerResumed, Reconnecting, Resumed
from tests.conftest import PATIENCE, UNIT, RunningServer
from tests.media.conftest import ADMIN_TOKEN, MediaServerFactory, Peers
from tests.media.peers import (
    HeldBackoff,
    Publisher,
    SignalingError,
    Subscriber,
    WindowMeter,
    first_candidate_init,
    measure,
)
from tests.sfu.sfu_measure import Window

#: Frames in a measured window (~3 s at the generator's 30 fps).
WINDOW_FRAMES = 90
#: Least share of a window's frames each subscriber must decode.
MIN_RATIO = 0.9
#: How long a cut client waits before reconnecting: longer than the server's
#: ``reconnecting_notice_after`` (10 units), far shorter than its grace period (100 units).
HOLD = 30 * UNIT


def describe(label: str, window: Window, subscribers: list[Subscriber]) -> str:
    rates = ", ".join(
        f"{s.name} {window.decoded_rate(s.decoded()):.1f} fps ({window.ratio(s.decoded()):.1%})"
        for s in subscribers
    )
    return f"{label}: sent {window.sent} frames at {window.sent_fps:.1f} fps; decoded {rates}"


def assert_delivered(label: str, window: Window, subscribers: list[Subscriber]) -> None:
    summary = describe(label, window, subscribers)
    print(summary)
    for subscriber in subscribers:
        assert window.ratio(subscriber.decoded()) >= MIN_RATIO, summary


async def flowing_room(
    server: RunningServer,
    peers: Peers,
    room: str,
    *,
    subscribers: int = 2,
    audio: bool = False,
    publisher_backoff: HeldBackoff | None = None,
) -> tuple[Publisher, list[Subscriber]]:
    """Subscribers first, then a publisher; returns once every subscriber decodes video."""
    subs = [await peers.subscriber(server, room, f"sub-{i}") for i in range(subscribers)]
    publisher = await peers.publisher(server, room, "pub", audio=audio, backoff=publisher_backoff)
    await publisher.publish()
    for sub in subs:
        await sub.wait_decoding()
    return publisher, subs


async def admin(server: RunningServer, method: str, path: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession() as http, http.request(method, server.http_url + path, headers=headers) as response:
        return response.status, await response.json()


async def session_state(server: RunningServer, session: str) -> str | None:
    _, body = await admin(server, "GET", "/admin/sessions")
    return next((s["state"] for s in body["sessions"] if s["session"] == session), None)


async def wait_state(server: RunningServer, session: str, state: str) -> None:
    """Poll the admin API until the session is in ``state`` (it has no event to wait on)."""
    async with asyncio.timeout(PATIENCE):
        while await session_state(server, session) != state:
            await asyncio.sleep(UNIT / 5)


def sfu_stats(server: RunningServer) -> dict[str, Any]:
    assert server.hub.media is not None, "the server runs no SFU"
    return server.hub.media.stats()


# -- 1. publish through the server -----------------------------------------------------------


async def test_publish_through_the_server_reaches_two_subscribers(
    media_server: MediaServerFactory, peers: Peers
) -> None:
    server = await media_server()
    room = "e2e-publish"
    subscribers = [await peers.subscriber(server, room, f"sub-{i}") for i in range(2)]
    publisher = await peers.publisher(server, room, "pub", audio=True)

    answer = await publisher.publish()
    assert answer["cseq"] == 1
    # aiortc does not trickle (its candidates are in its SDP), but the candidate path must work:
    # one real candidate and end-of-candidates for the publisher leg ...
    offer = publisher.pc.localDescription.sdp
    await publisher.client.send({"type": "candidate", "target": "publisher", "candidate": first_candidate_init(offer)})
    await publisher.client.send({"type": "candidate", "target": "publisher", "candidate": None})
    await publisher.barrier()
    assert [e.code for e in publisher.errors()] == ["self-target"], "a candidate was refused"

    for sub in subscribers:

        def announced(s: Subscriber = sub) -> bool:
            return set(s.live_tracks()) == publisher.track_ids()

        await sub.wait_for(announced, what="track-published for both tracks")
        await sub.wait_answered(1)
        # ... and end-of-candidates for the subscriber leg.
        await sub.client.send({"type": "candidate", "target": "subscriber", "candidate": None})
        await sub.barrier()
        assert [e.code for e in sub.errors()] == ["self-target"], "a subscriber message was refused"
        tracks = sub.live_tracks().values()
        assert {t["kind"] for t in tracks} == {"video", "audio"}
        assert {t["peer"] for t in tracks} == {publisher.peer_id}
        # The offer's m-lines name the announced track ids (a=msid), as docs/sfu.md promises.
        assert {t for t in sub.track_of_mid.values() if t} == publisher.track_ids()
        await sub.wait_decoding()

    window = await measure(publisher, subscribers, WINDOW_FRAMES)
    assert_delivered("publish, 2 subscribers", window, subscribers)
    for sub in subscribers:
        assert sub.audio().frames > 0, f"{sub.name} decoded no audio"

    stats = sfu_stats(server)
    assert stats["transcoding"]["frames_to_decoder"] == 0
    assert stats["transcoding"]["encoder_calls"] == 0
    for participant in (publisher, *subscribers):
        assert participant.client.resumes == participant.client.rejoins == 0


# -- 2. the publisher leaves -----------------------------------------------------------------


async def test_publisher_leave_unpublishes_and_renegotiates(
    media_server: MediaServerFactory, peers: Peers
) -> None:
    server = await media_server()
    publisher, subscribers = await flowing_room(server, peers, "e2e-leave", audio=True)
    tracks, gone = publisher.track_ids(), publisher.peer_id
    offers_before = {s.name: len(s.messages("subscriber-offer")) for s in subscribers}

    await publisher.client.leave()
    assert publisher.client.close_code == 1000

    for sub in subscribers:
        await sub.wait_event(PeerLeft(gone, "left"))
        await sub.wait_for(sub.no_live_tracks, what="track-unpublished")
        withdrawn = {m["track"]["id"] for m in sub.messages("track-unpublished")}
        assert withdrawn == tracks
        assert {m["track"]["peer"] for m in sub.messages("track-unpublished")} == {gone}
        # A renegotiated subscriber-offer in which no m-line carries a track any more (freed
        # slots stay sendonly and silent under the idle msid, see docs/sfu.md), answered.
        expected = offers_before[sub.name] + 1
        await sub.wait_answered(expected)  # the renegotiated offer
        assert len(sub.messages("subscriber-offer")) == expected
        assert sub.track_of_mid and all(t is None or t.startswith("idle-") for t in sub.track_of_mid.values()), sub.track_of_mid
        assert gone not in sub.client.peers
        await sub.barrier()  # the last answer was applied without an error
        assert [e.code for e in sub.errors()] == ["self-target"]

    stats = sfu_stats(server)
    assert (stats["tracks"], stats["participants"]) == (0, 2)


# -- 3. signaling cuts -----------------------------------------------------------------------


async def test_publisher_signaling_cut_resumes_while_media_flows(
    media_server: MediaServerFactory, peers: Peers
) -> None:
    server = await media_server()
    publisher, subscribers = await flowing_room(
        server, peers, "e2e-cut", publisher_backoff=HeldBackoff(HOLD)
    )
    peer, session = publisher.peer_id, publisher.session_id
    meter = WindowMeter(publisher)
    await meter.wait_sent(15)

    cut_at = publisher.sent()
    status, body = await admin(server, "POST", f"/admin/sessions/{session}/disconnect")
    assert (status, body) == (200, {"disconnected": True})
    await publisher.wait_event_of(Resumed)
    resumed_at = publisher.sent()
    await meter.wait_sent(resumed_at - meter.first + 30)
    window = await meter.finish(subscribers)

    # Media never depended on the socket: the frames sent while signaling was down arrived.
    detached = set(range(cut_at, resumed_at))
    assert len(detached) >= 10, f"the cut lasted only {len(detached)} frames"
    for sub in subscribers:
        during = len(detached & sub.decoded()) / len(detached)
        print(f"{sub.name}: decoded {during:.1%} of the {len(detached)} frames sent during the cut")
        assert during >= MIN_RATIO
    assert_delivered("across the cut", window, subscribers)

    # The session survived: resumed once, never rejoined, same peer, nothing renegotiated.
    [reconnecting] = publisher.of_type(Reconnecting)
    assert reconnecting.code == 1001
    assert (publisher.client.resumes, publisher.client.rejoins) == (1, 0)
    assert (publisher.peer_id, publisher.session_id) == (peer, session)
    assert await session_state(server, session) == "attached"
    for sub in subscribers:
        await sub.wait_event(PeerResumed(peer))
        assert PeerReconnecting(peer) in sub.events
        assert not sub.of_type(PeerLeft)
        assert set(sub.live_tracks()) == publisher.track_ids()
        assert sub.messages("track-unpublished") == []
        assert len(sub.messages("subscriber-offer")) == 1
    assert sfu_stats(server)["tracks"] == 1


async def test_subscriber_offer_sent_during_a_cut_is_replayed(
    media_server: MediaServerFactory, peers: Peers
) -> None:
    """The SFU's offer is a session message: queued while the socket is down, replayed on resume."""
    server = await media_server()
    room = "e2e-cut-offer"
    sub = await peers.subscriber(server, room, "sub", backoff=HeldBackoff(HOLD))
    publisher = await peers.publisher(server, room, "pub")
    session = sub.session_id

    status, _ = await admin(server, "POST", f"/admin/sessions/{session}/disconnect")
    assert status == 200
    await wait_state(server, session, "detached")
    await publisher.publish()  # track-published and subscriber-offer wait in the replay buffer
    resumed = await sub.wait_event_of(Resumed)
    assert resumed.replayed >= 2, resumed
    await sub.wait_answered(1)  # the replayed offer
    await sub.wait_decoding()
    window = await measure(publisher, [sub], 60)
    assert_delivered("offer replayed after a cut", window, [sub])
    assert (sub.client.resumes, sub.client.rejoins) == (1, 0)
    assert len(sub.messages("subscriber-offer")) == 1


# -- 5. hostile SDP --------------------------------------------------------------------------


def hostile_offers(real: str) -> dict[str, str]:
    """Offers the hub must refuse before aiortc parses them.

    The 10,000-line one (over the 6,516-line limit) uses LF line ends so that, JSON-encoded, it
    stays well under the frame limit and reaches the SDP check.
    """
    session_part = real.split("\r\nm=", 1)[0] + "\r\n"
    assert "m=" not in session_part
    offers = {
        "garbage lines": real.replace("a=mid:0\r\n", "a=mid:0\r\nthis is not SDP\r\n\x01\x02\r\n=\r\n"),
        "10,000 lines": "v=0\n" + "a=x\n" * 10_000,
        "missing m=": session_part,
        "not SDP at all": "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "control characters": real.replace("s=-\r\n", "s=\x1b[2J\x07\r\n"),
    }
    assert real not in offers.values()
    return offers


async def test_hostile_publish_sdp_is_refused_before_the_sfu(
    media_server: MediaServerFactory, peers: Peers
) -> None:
    server = await media_server()
    room = "e2e-hostile"
    sub = await peers.subscriber(server, room, "sub")
    publisher = await peers.publisher(server, room, "pub")
    real = (await publisher.pc.createOffer()).sdp

    for label, sdp in hostile_offers(real).items():
        cseq = await publisher.client.send({"type": "publish", "sdp": sdp})
        with pytest.raises(SignalingError) as refused:
            await publisher.reply_to(cseq)
        assert refused.value.error.code == "bad-sdp", f"{label}: {refused.value}"
    for line in ("candidate:1 1 udp 1 127.0.0.1 99999 typ host", "candidate:x; DROP TABLE rooms"):
        cseq = await publisher.client.send(
            {"type": "candidate", "target": "publisher", "candidate": {"candidate": line, "sdpMid": "0"}}
        )
        with pytest.raises(SignalingError) as refused:
            await publisher.reply_to(cseq)
        assert refused.value.error.code == "bad-sdp", f"{line!r}: {refused.value}"

    # None of it reached the SFU (it would have opened a publisher connection for an offer).
    assert sfu_stats(server)["peer_connections"] == 0
    # The session keeps working: same connection, and a real offer publishes.
    await publisher.publish()
    await sub.wait_decoding()
    window = await measure(publisher, [sub], 30)
    assert_delivered("after hostile offers", window, [sub])
    assert publisher.client.resumes == publisher.client.rejoins == 0
    assert sub.errors() == []


# -- a participant that only publishes ---------------------------------------------------------


async def test_publish_only_participant_can_publish(
    media_server: MediaServerFactory, peers: Peers
) -> None:
    server = await media_server()
    room = "e2e-publish-only"
    sub = await peers.subscriber(server, room, "sub")
    publisher = await peers.publisher(server, room, "camera", subscribe=False)
    await publisher.publish()
    await sub.wait_decoding()
    # A publish-only participant is never offered anything.
    assert publisher.messages("subscriber-offer") == publisher.messages("track-published") == []


# -- operator mute ----------------------------------------------------------------------------


async def test_operator_mute_stops_forwarding_and_unmute_restarts_it(
    media_server: MediaServerFactory, peers: Peers
) -> None:
    server = await media_server()
    publisher, (sub,) = await flowing_room(server, peers, "e2e-mute", subscribers=1)
    video = next(t for t in sub.live_tracks().values() if t["kind"] == "video")
    path = f"/admin/participants/{publisher.peer_id}/mute"

    async def mute(muted: bool) -> int:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with aiohttp.ClientSession() as http, http.post(
            server.http_url + path, json={"track": video["id"], "muted": muted}, headers=headers
        ) as response:
            return response.status

    assert await mute(True) == 200
    await sub.wait_for(lambda: bool(sub.messages("track-muted")), what="track-muted")
    assert sub.messages("track-muted")[-1]["muted"] is True
    # Frames the publisher sends from now on never reach the subscriber.
    muted_from = publisher.sent() + 15  # what was in flight may still land
    await WindowMeter(publisher).wait_sent(60)
    assert max(sub.decoded()) < muted_from, "frames kept flowing while muted"
    assert await mute(False) == 200
    resumed_from = publisher.sent()
    await sub.wait_decoded_past(resumed_from)  # keyframe requested; decoding starts again
    assert sub.messages("track-muted")[-1]["muted"] is False
    async with aiohttp.ClientSession() as http, http.post(
        server.http_url + path, json={"track": "nope", "muted": True}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as response:
        assert response.status == 404


async def test_sfu_counters_are_on_metrics(media_server: MediaServerFactory, peers: Peers) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    server = await media_server()
    await flowing_room(server, peers, "e2e-metrics", subscribers=1)
    async with aiohttp.ClientSession() as http, http.get(server.http_url + "/metrics") as response:
        text = await response.text()
    values = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}
    assert values["switchboard_sfu_tracks"] >= 1
    assert values["switchboard_sfu_packets_forwarded_total"] > 0
    assert values["switchboard_sfu_bytes_forwarded_total"] > 0
    assert values["switchboard_sfu_frames_to_decoder_total"] == 0
    assert values["switchboard_sfu_encoder_calls_total"] == 0
