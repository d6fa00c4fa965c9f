"""The tone bot example publishes; Python subscribers (the SDK) decode its audio and video."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from switchboard import Room, TrackSubscribed
from tests.conftest import RunningServer
from tests.media.peers import MEDIA_PATIENCE
from tests.sdk.bots import Bot
from tests.sdk.conftest import LOOPBACK_ICE
from tests.sdk.measure import Decoded, decode


async def test_tone_bot_reaches_a_python_subscriber_at_the_sent_rate(
    sdk_server: RunningServer, bots: Callable[..., Awaitable[Bot]]
) -> None:
    listener = await Room.connect(sdk_server.url, room="tone", name="listener", ice=LOOPBACK_ICE)
    events = listener.events()
    bot = await bots("tone_bot.py", "--url", sdk_server.url, "--room", "tone", "--ice-host", "127.0.0.1")
    await bot.wait_line("publishing in tone")
    received = {"audio": Decoded("audio", 960), "video": Decoded("video", 3000)}
    tasks: list[asyncio.Task[None]] = []
    try:
        async with asyncio.timeout(MEDIA_PATIENCE):
            async for event in events:
                if isinstance(event, TrackSubscribed):
                    assert event.track.source == ("microphone" if event.track.kind == "audio" else "camera")
                    tasks.append(asyncio.create_task(decode(event.stream, received[event.track.kind])))
                    if len(tasks) == 2:
                        break
        # ~4 s of each: 200 Opus frames, 120 video frames.
        await received["audio"].wait_frames(200, MEDIA_PATIENCE)
        await received["video"].wait_frames(120, MEDIA_PATIENCE)
    finally:
        await listener.close()
        for task in tasks:
            await task  # the room's close ended the tracks
    for kind, got in received.items():
        assert got.ratio() >= 0.9, f"{kind}: decoded {got.frames} of {got.sent()} sent frames"
        print(f"{kind}: decoded {got.frames}/{got.sent()} ({got.ratio():.1%}), longest hole {got.longest_hole():.3f} s")
