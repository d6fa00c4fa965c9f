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
    print(f"gst->gst: fps={await subscriber.fps(3.0):.1f} first_frame_ms={subscriber.first_frame_ms()}")
    kinds = sorted(m["track"]["kind"] for m in subscriber.messages if m.get("type") == "track-published")
    assert kinds == ["audio", "video"]
    assert not publisher.errors() and not subscriber.errors(), (publisher.errors(), subscriber.errors())
    assert ("publisher", "connected") in publisher.states


async def test_gst_subscriber_gets_publishers_that_replace_each_other(media_clients: MediaFactory) -> None:
    """Failure 3 of issue 16: a recycled subscriber slot went sendonly -> inactive -> sendonly,
    which webrtcbin 1.22 refuses; it never decoded the next publisher. Slots now stay sendonly,
    and the subscriber's m-line count stays bounded however many publishers come and go."""
    room = room_name("gst-slots")
    subscriber = await media_clients("gst", room, "gst-sub", "--subscribe")
    sections: list[int] = []
    for cycle in range(3):
        publisher = await media_clients("gst", room, f"pub-{cycle}", "--publish")
        before = subscriber.video_frames()
        await subscriber.wait(lambda s, b=before: s.video_frames() > b + FLOWING, 60, f"video of publisher {cycle}")
        offers = [m["sdp"] for m in subscriber.messages if m.get("type") == "subscriber-offer"]
        sections.append(offers[-1].count("\nm="))
        await publisher.close()
        await subscriber.wait(
            lambda s, n=cycle: sum(m.get("type") == "track-unpublished" for m in s.messages) == 2 * (n + 1),
            30, "track-unpublished",
        )
    assert sections == [2, 2, 2], sections  # one audio and one video slot, reused every time
    assert not subscriber.errors(), subscriber.errors()


async def test_gst_publisher_whose_dtls_fails_is_told(media_clients: MediaFactory) -> None:
    """A publisher connection that fails reaches the client as ``error media-failed`` (it used
    to be an INFO log only). Forced here by a webrtcbin offer saying ``a=setup:passive``: the SFU
    must then be the DTLS client, and aiortc's ECDSA-only ciphers meet webrtcbin's RSA key."""
    room = room_name("gst-fail")
    publisher = await media_clients("gst", room, "gst-pub", "--publish", "--offer-passive")
    await publisher.wait(lambda s: any(e["code"] == "media-failed" for e in s.errors()), 60, "media-failed")
    error = next(e for e in publisher.errors() if e["code"] == "media-failed")
    assert "publisher" in error["message"]
    assert "DTLS handshake failed" in error["message"], error  # which layer, not "ICE or DTLS"


async def test_gst_to_aiortc_and_non_trickle(media_clients: MediaFactory) -> None:
    room = room_name("gst-aio")
    await media_clients("gst", room, "gst-pub", "--publish", "--no-trickle")
    subscriber = await media_clients("aiortc", room, "aio-sub", "--subscribe")
    await subscriber.wait(lambda s: s.video_frames() > FLOWING and s.audio_buffers() > FLOWING, 60, "media decoded")
