"""Keyframe gating, late joiners and subscriber PLI forwarded (rate-limited) upstream."""

from __future__ import annotations

import time

import pytest

from sfu.config import SfuConfig
from sfu.keyframe import vp8_keyframe_start
from tests.sfu.sfu_poll import eventually
from tests.sfu.sfu_testpeers import LOOPBACK, LOOPBACK_PEERS, TIME_SCALE, SfuEnv


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_late_joiner_gets_a_picture_within_a_second(env: SfuEnv, codec: str) -> None:
    early = await env.subscriber("early")
    publisher = env.publisher("alice", video_codec=codec)
    await env.sfu.join("room", "alice")
    await publisher.publish()
    # aiortc's encoders make a keyframe every 3000 frames (VP8) or 250 (x264 default GOP):
    # after 90 frames the first
    # keyframe is long gone and only a PLI can produce another.
    await early.wait_for(lambda: len(early.received) == 2 and early.video().frames >= 90, 30)
    plis_before = env.sfu.stats()["pli_sent_upstream"]

    late = await env.subscriber("late")
    await late.wait_for(
        lambda: (
            late.connected_at is not None
            and "video" in {r.kind for r in late.received.values()}
            and late.video().first_frame_at is not None
        ),
        20,
    )
    assert late.connected_at is not None
    first_frame_at = late.video().first_frame_at
    assert first_frame_at is not None
    delay = first_frame_at - late.connected_at
    assert delay <= 1.0 * TIME_SCALE, f"first picture {delay:.3f} s after connecting"
    assert late.video().indexes[0] >= 90, "the late joiner must start at a fresh keyframe"
    assert env.sfu.stats()["pli_sent_upstream"] > plis_before
    # The early subscriber keeps decoding.
    seen = early.video().frames
    await early.wait_for(lambda: early.video().frames >= seen + 15, 10)


async def test_subscriber_pli_reaches_the_publisher_rate_limited() -> None:
    interval = 1.0
    env = SfuEnv(SfuConfig(host_addresses=LOOPBACK, ice_allow_peers=LOOPBACK_PEERS, keyframe_request_interval=interval))
    try:
        tapper = await env.subscriber("tapper", tap_video=True)
        publisher = env.publisher("alice", audio=False)
        await env.sfu.join("room", "alice")
        await publisher.publish()
        # Forwarding starts at a keyframe (the gate), then delta frames follow.
        await tapper.wait_for(lambda: len(tapper.tapped) >= 60, 20)
        assert vp8_keyframe_start(tapper.tapped[0].payload)
        since = time.monotonic()
        await eventually(lambda: time.monotonic() - since > interval, interval + 2)
        before = env.sfu.stats()
        seen = len(tapper.tapped)

        for _ in range(5):
            await tapper.send_pli()
        await eventually(
            lambda: env.sfu.stats()["pli_from_subscribers"] >= before["pli_from_subscribers"] + 5,
            10,
        )
        after = env.sfu.stats()
        assert after["pli_sent_upstream"] == before["pli_sent_upstream"] + 1
        assert after["pli_suppressed"] >= before["pli_suppressed"] + 4
        # The publisher answered with a keyframe, forwarded to the subscriber.
        await tapper.wait_for(
            lambda: any(vp8_keyframe_start(p.payload) for p in tapper.tapped[seen:]), 10
        )
    finally:
        await env.close()
