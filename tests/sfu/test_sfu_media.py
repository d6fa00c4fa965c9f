"""Forwarding real media: a publisher, three subscribers, VP8 or H.264 video plus Opus.

Subscribers must decode at least 90 % of the frames the publisher sent, counted frame by frame
(the frame number is drawn into the picture), so the ratio holds on a loaded machine whatever
the absolute frame rate.
"""

from __future__ import annotations

import pytest

from tests.sfu.sfu_measure import decoded_fps, decoded_ratio, measure_window
from tests.sfu.sfu_testpeers import SfuEnv, SubscriberClient


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_three_subscribers_decode_what_the_publisher_sends(env: SfuEnv, codec: str) -> None:
    subscribers = [await env.subscriber(f"sub-{i}") for i in range(3)]
    publisher = env.publisher("alice", video_codec=codec)
    await env.sfu.join("room", "alice")
    await publisher.publish()
    for subscriber in subscribers:

        def flowing(s: SubscriberClient = subscriber) -> bool:
            return len(s.received) == 2 and s.video().frames >= 5 and s.audio().frames >= 5

        await subscriber.wait_for(flowing, 20)
    assert publisher.audio is not None
    audio_before = publisher.audio.frames_sent
    received_before = [s.audio().frames for s in subscribers]

    window = await measure_window(publisher, subscribers, frames=90)

    audio_sent = publisher.audio.frames_sent - audio_before
    for subscriber, before in zip(subscribers, received_before, strict=True):
        ratio = decoded_ratio(subscriber, window)
        assert ratio >= 0.9, (
            f"{subscriber.peer} decoded {ratio:.0%} of {window.sent} frames "
            f"({decoded_fps(subscriber, window):.1f} fps vs {window.sent_fps:.1f} sent)"
        )
        audio = subscriber.audio().frames - before
        assert audio >= 0.5 * audio_sent, f"{subscriber.peer}: {audio}/{audio_sent} audio frames"
    # The tracks were announced under the publisher's own track ids.
    assert {t["id"] for t in subscribers[0].published()} == set(publisher.track_ids())
    stats = env.sfu.stats()
    assert {t["codec"] for t in stats["per_track"]} == {codec, "opus"}
    assert stats["transcoding"]["frames_to_decoder"] == 0
    assert stats["transcoding"]["encoder_calls"] == 0
    assert stats["transcoding"]["packets_past_tap"] > 0
    assert stats["forward_errors"] == 0
    # Subscribers' bandwidth estimates reached the SFU (it forwards their minimum upstream).
    assert stats["remb_from_subscribers"] > 0
