"""The media SDK across an SFU node failover: the SFU holding the room is killed, the room
moves to the other node, the SDK rebuilds its connections and publishes again by itself (one
``MediaReconnected``), and a subscriber's ``IncomingTrack`` simply resumes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from switchboard import IceOptions, MediaReconnected, PcmSource, Room, RoomOptions, TrackSubscribed
from tests.cluster.conftest import Cluster
from tests.cluster.test_sfu_failover import FAILOVER_BOUND
from tests.media.peers import MEDIA_PATIENCE

ICE = IceOptions(host_addresses=("127.0.0.1",))
FRAMES = 10


async def _tone() -> AsyncIterator[bytes]:
    while True:
        yield (6000).to_bytes(2, "little", signed=True) * 480 + (-6000).to_bytes(2, "little", signed=True) * 480


# Slow: cluster start-up dominates; the default run covers the SDK's rebuild-and-republish
# path with a rejoin (tests/sdk/test_room.py).
@pytest.mark.slow
async def test_the_sdk_publishes_again_after_an_sfu_failover(cluster: Cluster) -> None:
    sfu_a, sfu_b = await asyncio.gather(cluster.sfu("sfu-a"), cluster.sfu("sfu-b"))
    nodes = {"sfu-a": sfu_a, "sfu-b": sfu_b}
    _, url = await cluster.signaling("sig-1")
    bot = await Room.connect(url, room="moving", name="bot", ice=ICE, auto_subscribe=False)
    listener = await Room.connect(url, room="moving", name="listener", ice=ICE,
                                  options=RoomOptions(max_frames=FRAMES))
    try:
        bot_events, events = bot.events(), listener.events()
        publication = await bot.publish(PcmSource.from_chunks(_tone()))
        async with asyncio.timeout(MEDIA_PATIENCE):
            async for event in events:
                if isinstance(event, TrackSubscribed):
                    stream = event.stream
                    break
        await stream.recv()
        victim = await cluster.registry().placement("moving")
        assert victim in nodes
        nodes[victim].kill()
        killed_at = nodes[victim].stopped_at
        assert killed_at is not None

        async def republished() -> MediaReconnected:
            async for event in bot_events:
                if isinstance(event, MediaReconnected):
                    return event
            raise AssertionError("the bot's room ended")

        async with asyncio.timeout(MEDIA_PATIENCE):
            reconnected = await republished()
            # The listener's track resumes: the same object decodes frames again. It holds at
            # most FRAMES old frames, so of 2 * FRAMES read after its rebuild, some are new.
            read_after = 0
            while read_after < 2 * FRAMES:
                await stream.recv()
                if listener.media_reconnects == 1:
                    read_after += 1
        recovered = time.monotonic() - killed_at
        print(f"SFU {victim} killed: bot published again ({reconnected.reason}), listener decoding after {recovered:.2f} s")
        assert reconnected.reason == "sfu-failover" and bot.media_reconnects == 1
        assert await cluster.registry().placement("moving") not in (None, victim)
        assert publication.id in {p.id for p in bot.publications}
        assert recovered < FAILOVER_BOUND, recovered
    finally:
        await bot.close()
        await listener.close()
