"""Track state the room sees (source, self-mute) and active speakers from RFC 6464 audio levels,
with real aiortc publishers: one sends a loud tone, one sends aiortc's silence."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sfu.config import SfuConfig
from sfu.errors import SfuError
from sfu.speakers import SpeakerConfig
from tests.sfu.sfu_testpeers import LOOPBACK, SfuEnv, SubscriberClient, ToneAudioTrack


@pytest.fixture
async def fast_env() -> AsyncIterator[SfuEnv]:
    environment = SfuEnv(SfuConfig(host_addresses=LOOPBACK, speakers=SpeakerConfig(interval=0.1)))
    try:
        yield environment
    finally:
        await environment.close()


def of_type(subscriber: SubscriberClient, kind: str) -> list[dict[str, Any]]:
    return [m for m in subscriber.messages if m["type"] == kind]


async def test_sources_and_self_mute_reach_the_room(env: SfuEnv) -> None:
    watcher = await env.subscriber("watcher")
    alice = env.publisher("alice")
    await env.sfu.join("room", "alice")
    assert alice.video is not None and alice.audio is not None
    await alice.publish(tracks=[
        {"id": alice.video.id, "source": "screen"},
        {"id": alice.audio.id, "source": "microphone", "muted": True},
        {"id": "not-in-the-offer", "source": "camera"},
    ])
    await watcher.wait_for(lambda: len(watcher.published()) == 2, 10)
    by_kind = {t["kind"]: t for t in watcher.published()}
    assert by_kind["video"]["source"] == "screen" and by_kind["video"]["muted"] is False
    assert by_kind["audio"]["source"] == "microphone" and by_kind["audio"]["muted"] is True
    assert by_kind["audio"]["operator_muted"] is False

    # Self-unmute by msid track id (what the client knows): the others hear it, the publisher not.
    await env.sfu.set_track_state("room", "alice", alice.audio.id, False)
    await env.sfu.set_track_state("room", "alice", alice.audio.id, False)  # no change, no message
    states = of_type(watcher, "track-state")
    assert [(s["track"]["id"], s["muted"], s["track"]["muted"]) for s in states] == [
        (by_kind["audio"]["id"], False, False)
    ]
    assert not [m for m in alice.messages if m["type"] == "track-state"]
    with pytest.raises(SfuError) as info:
        await env.sfu.set_track_state("room", "alice", "nope", True)
    assert info.value.code == "unknown-track"

    # A late joiner learns the current state with track-published.
    late = await env.subscriber("late")
    await late.wait_for(lambda: len(late.published()) == 2, 10)
    assert {t["kind"]: t["muted"] for t in late.published()} == {"video": False, "audio": False}


async def test_active_speakers_follow_the_loud_publisher(fast_env: SfuEnv) -> None:
    env = fast_env
    watcher = await env.subscriber("watcher")
    loud = env.publisher("loud", video_codec=None, audio_track=ToneAudioTrack())
    quiet = env.publisher("quiet", video_codec=None)
    for publisher in (loud, quiet):
        await env.sfu.join("room", publisher.peer)
        await publisher.publish()

    def announced() -> list[list[str]]:
        return [[s["peer"] for s in m["speakers"]] for m in of_type(watcher, "active-speakers")]

    await watcher.wait_for(lambda: ["loud"] in announced(), 20)
    first = next(m for m in of_type(watcher, "active-speakers") if m["speakers"])
    assert 0.1 < first["speakers"][0]["level"] <= 1.0
    assert all("quiet" not in peers for peers in announced())
    # Sent only when the set changes: no repeats of the same set in a row.
    sets = announced()
    assert all(a != b for a, b in itertools.pairwise(sets)), sets
    # Everyone hears it, the speaker too.
    assert any(m["type"] == "active-speakers" for m in loud.messages)

    # A joiner learns who speaks now, without waiting for the set to change.
    late = await env.subscriber("late")
    await late.wait_for(lambda: any(m["type"] == "active-speakers" for m in late.messages), 10)
    assert [s["peer"] for s in of_type(late, "active-speakers")[0]["speakers"]] == ["loud"]

    # A muted speaker is no speaker: the set becomes empty.
    assert loud.audio is not None
    await env.sfu.set_track_state("room", "loud", loud.audio.id, True)
    await watcher.wait_for(lambda: announced()[-1] == [], 20)


async def test_set_subscription_checks_the_track_and_leaves_single_layer_tracks_alone(env: SfuEnv) -> None:
    watcher = await env.subscriber("watcher")
    alice = env.publisher("alice")
    await env.sfu.join("room", "alice")
    await alice.publish()
    await watcher.wait_for(lambda: len(watcher.published()) == 2, 10)
    video = next(t for t in watcher.published() if t["kind"] == "video")
    # An aiortc publisher sends one layer: the choice is kept, nothing is switched or told.
    await env.sfu.set_subscription("room", "watcher", video["id"], "low")
    await env.sfu.set_subscription("room", "watcher", video["id"], "off")
    assert not of_type(watcher, "track-layer")
    for who, track in (("watcher", "nope"), ("alice", video["id"])):  # unknown; one's own track
        with pytest.raises(SfuError) as info:
            await env.sfu.set_subscription("room", who, track, "low")
        assert info.value.code == "unknown-track"
    with pytest.raises(SfuError) as info:
        await env.sfu.set_subscription("room", "watcher", video["id"], "ultra")
    assert info.value.code == "sfu-error"
