"""GStreamer 1.22 webrtcbin (stock settings: RSA DTLS certificate, max-bundle) through the SFU."""

from __future__ import annotations

from tests.browser.conftest import room_name
from tests.interop.conftest import MediaFactory

#: Frames a subscriber must decode before video counts as flowing.
FLOWING = 30


async def test_gst_publisher_to_gst_subscriber_video_and_audio(media_clients: MediaFactory) -> None:
    """Failures 1 and 2 of issue 16: a stock webrtcbin publisher failed DTLS (the SFU was the
    DTLS client against its RSA key), and its bundle-only audio m-line was answered inactive."""
    room = room_name("gst")
    publisher = await media_clients("gst", room, "gst-pub", "--publish")
    subscriber = await media_clients("gst", room, "gst-sub", "--subscribe")
    await subscriber.wait(lambda s: s.video_frames() > FLOWING, 60, "video decoded")
    await subscriber.wait(lambda s: s.audio_buffers() > FLOWING, 30, "audio decoded")
    kinds = sorted(m["track"]["kind"] for m in subscriber.messages if m.get("type") == "track-published")
    assert kinds == ["audio", "video"]
    assert not publisher.errors() and not subscriber.errors(), (publisher.errors(), subscriber.errors())
    assert ("publisher", "connected") in publisher.states
