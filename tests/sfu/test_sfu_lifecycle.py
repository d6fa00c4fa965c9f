"""Tracks come and go: announcements, renegotiation, coalesced offers, no leaks."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest
from aiortc import RTCPeerConnection

from sfu.errors import SfuError
from sfu.sdp_info import parse_session
from tests.sfu.sfu_poll import eventually
from tests.sfu.sfu_testpeers import SfuEnv, SubscriberClient


def directions(offer: str) -> list[str]:
    return [s.direction for s in parse_session(offer).sections]


def msid_streams(offer: str) -> list[str | None]:
    return [s.msid_stream for s in parse_session(offer).sections]


async def published_and_flowing(subscriber: SubscriberClient, frames: int = 5) -> None:
    await subscriber.wait_for(
        lambda: (
            subscriber.offers_answered == len(subscriber.offers())
            and any(r.kind == "video" and r.frames >= frames for r in subscriber.received.values())
        ),
        20,
    )


async def test_unpublish_withdraws_the_track_and_renegotiates(env: SfuEnv) -> None:
    subscriber = await env.subscriber("bob")
    publisher = env.publisher("alice")
    await env.sfu.join("room", "alice")
    await publisher.publish()
    await published_and_flowing(subscriber)
    assert publisher.video is not None
    video_id = publisher.video.id

    await env.sfu.unpublish("room", "alice", video_id)

    withdrawn = [m for m in subscriber.messages if m["type"] == "track-unpublished"]
    assert withdrawn == [
        {"type": "track-unpublished", "track": {
            "id": video_id, "peer": "alice", "kind": "video", "source": "camera", "muted": False, "operator_muted": False,
        }}
    ]
    await subscriber.wait_for(lambda: subscriber.offers_answered == 2, 10)
    # The freed slot stays sendonly (webrtcbin refuses direction changes) and carries nothing.
    assert directions(subscriber.offers()[-1]) == ["sendonly", "sendonly"]
    assert msid_streams(subscriber.offers()[-1]) == ["switchboard-idle", "alice"]
    assert [t["kind"] for t in subscriber.published()] == ["audio"]
    assert env.sfu.stats()["tracks"] == 1
    # The client's next offer still sends on that m-line: not published again until it stops.
    await publisher.publish()
    assert env.sfu.stats()["tracks"] == 1
    with pytest.raises(SfuError) as raised:
        await env.sfu.unpublish("room", "alice", video_id)
    assert raised.value.code == "unknown-track"


async def test_leave_withdraws_tracks_and_closes_connections(env: SfuEnv) -> None:
    subscriber = await env.subscriber("bob")
    publisher = env.publisher("alice")
    await env.sfu.join("room", "alice")
    await publisher.publish()
    await published_and_flowing(subscriber)

    await env.drop(publisher)

    kinds = sorted(
        m["track"]["kind"] for m in subscriber.messages if m["type"] == "track-unpublished"
    )
    assert kinds == ["audio", "video"]
    await subscriber.wait_for(lambda: subscriber.offers_answered == 2, 10)
    assert directions(subscriber.offers()[-1]) == ["sendonly", "sendonly"]
    assert msid_streams(subscriber.offers()[-1]) == ["switchboard-idle", "switchboard-idle"]
    stats = env.sfu.stats()
    assert (stats["participants"], stats["tracks"], stats["peer_connections"]) == (1, 0, 1)
    await env.sfu.leave("room", "alice")  # idempotent


async def test_offers_are_coalesced_while_one_is_unanswered(env: SfuEnv) -> None:
    subscriber = await env.subscriber("bob", auto_answer=False)
    first = env.publisher("alice", audio=False)
    second = env.publisher("carol", audio=False)
    await env.sfu.join("room", "alice")
    await env.sfu.join("room", "carol")
    await first.publish()
    await second.publish()
    assert len(subscriber.offers()) == 1  # the second change waits for the answer
    assert len(parse_session(subscriber.offers()[0]).sections) == 1

    subscriber.answer_next()
    await subscriber.wait_for(lambda: len(subscriber.offers()) == 2, 10)
    assert len(parse_session(subscriber.offers()[1]).sections) == 2
    subscriber.answer_next()
    await subscriber.wait_for(
        lambda: (
            subscriber.offers_answered == 2
            and sum(r.frames > 0 for r in subscriber.received.values()) == 2
        ),
        20,
    )
    # Publishers see each other's tracks, never their own.
    assert [t["peer"] for t in first.messages_published()] == ["carol"]


def own_threads() -> int:
    """Threads other than the loop's default executor (a bounded pool that grows lazily: with
    recycled slots staying sendonly, decoders no longer stop and start, and the pool's second
    worker may first appear after the baseline)."""
    return sum(not t.name.startswith("asyncio_") for t in threading.enumerate())


def live_peer_connections() -> int:
    gc.collect()
    return sum(isinstance(o, RTCPeerConnection) for o in gc.get_objects())


async def one_cycle(env: SfuEnv, subscriber: SubscriberClient, cycle: int) -> None:
    """A publisher joins, publishes audio+video, is seen decoding, and leaves."""
    first = cycle * 500  # frame numbers of this publisher: first .. first + 499
    publisher = env.publisher(f"pub-{cycle}", first_index=first)
    await env.sfu.join("room", publisher.peer)
    await publisher.publish()

    def decoded_from_this_publisher() -> bool:
        return any(
            first <= i < first + 500
            for r in subscriber.received.values()
            if r.kind == "video"
            for i in r.indexes[-10:]
        )

    await subscriber.wait_for(decoded_from_this_publisher, 20)
    await env.drop(publisher)


async def run_cycles(env: SfuEnv, cycles: int) -> None:
    subscriber = await env.subscriber("stayer")
    assert subscriber.offers() == []  # lazy: no subscriber connection while nothing is published
    # The first cycle creates what legitimately stays (the subscriber's connection, its
    # decoder threads, aiortc's executor): measure from there.
    await one_cycle(env, subscriber, 0)
    await subscriber.wait_for(lambda: subscriber.offers_answered == len(subscriber.offers()), 10)
    tasks_before = len(asyncio.all_tasks())
    threads_before = own_threads()
    pcs_before = live_peer_connections()
    started = time.monotonic()
    for cycle in range(1, cycles):
        await one_cycle(env, subscriber, cycle)
    await subscriber.wait_for(lambda: subscriber.offers_answered == len(subscriber.offers()), 10)
    elapsed = time.monotonic() - started

    stats = env.sfu.stats()
    assert (stats["participants"], stats["tracks"], stats["peer_connections"]) == (1, 0, 1)
    assert stats["subscriber_transceivers"] == 2, "slots must be recycled, not added"
    assert len(subscriber.pc.getTransceivers()) == 2
    # The active-speaker task ends once no audio is left and "nobody speaks" was said.
    await eventually(lambda: env.sfu.stats()["tasks"] == 0, 10)
    assert stats["transcoding"]["frames_to_decoder"] == stats["transcoding"]["encoder_calls"] == 0
    try:
        await eventually(lambda: len(asyncio.all_tasks()) <= tasks_before, 10)
    except TimeoutError:
        raise AssertionError(sorted(t.get_name() + " " + repr(t.get_coro())[:80] for t in asyncio.all_tasks())) from None
    await eventually(lambda: own_threads() <= threads_before, 10)
    await eventually(lambda: live_peer_connections() <= pcs_before, 10)
    print(f"{cycles} join/publish/leave cycles in {elapsed:.1f} s")


async def test_hundred_publish_cycles_leak_nothing(env: SfuEnv) -> None:
    # About 8 s on an idle 2-core machine: cheap enough to run by default.
    await run_cycles(env, 100)
