"""A signaling cut of a bot (fault proxy) resumes the session and leaves its media alone."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from switchboard import ParticipantLeft, Room, TrackSubscribed, TrackUnpublished
from tests.conftest import UNIT, RunningServer
from tests.faultproxy import FaultProxy
from tests.media.peers import MEDIA_PATIENCE
from tests.sdk.bots import Bot
from tests.sdk.conftest import LOOPBACK_ICE
from tests.sdk.measure import Decoded, decode


async def test_a_signaling_cut_keeps_the_bots_media_flowing(
    sdk_server: RunningServer, bots: Callable[..., Awaitable[Bot]]
) -> None:
    proxy = await FaultProxy(sdk_server.runner.addresses[0][1]).start()
    listener = await Room.connect(sdk_server.url, room="cut", name="listener", ice=LOOPBACK_ICE)
    events = listener.events()
    audio = Decoded("audio", 960)
    task: asyncio.Task[None] | None = None
    before = 0
    seen: list[object] = []
    try:
        bot = await bots("tone_bot.py", "--url", proxy.url, "--room", "cut", "--ice-host", "127.0.0.1", "--no-video")
        await bot.wait_line("publishing in cut")
        async with asyncio.timeout(MEDIA_PATIENCE):
            async for event in events:
                if isinstance(event, TrackSubscribed):
                    task = asyncio.create_task(decode(event.stream, audio))
                    break
        await audio.wait_frames(50, MEDIA_PATIENCE)
        assert proxy.cut() == 1  # the bot's only connection: its signaling WebSocket
        before = audio.frames
        await bot.wait_line("signaling resumed")
        await audio.wait_frames(before + 100, MEDIA_PATIENCE)
        while True:  # what the listener heard meanwhile, without waiting
            try:
                seen.append(await asyncio.wait_for(anext(events), 0))
            except TimeoutError:
                break
    finally:
        await listener.close()
        if task is not None:
            await task
        await proxy.close()
    assert "signaling lost" in bot.output
    assert not [e for e in seen if isinstance(e, TrackUnpublished | ParticipantLeft)], seen
    assert audio.longest_hole() < 1.0, f"a stall of {audio.longest_hole():.3f} s of media"
    # Wall clock: one second on an idle machine, scaled with the tests' time scale.
    stall = audio.longest_stall(since=before)
    assert stall < 20 * UNIT, f"no audio decoded for {stall:.3f} s across the cut"
    assert audio.ratio() >= 0.9, f"decoded {audio.frames} of {audio.sent()}"
    print(f"across the cut: {audio.frames}/{audio.sent()} frames, longest hole {audio.longest_hole():.3f} s, longest stall {stall:.3f} s")
