"""A room on an impaired network, end to end: nothing lost, nobody dropped, media keeps decoding.

Signaling crosses the TCP fault proxy (latency ± jitter, random stalls and cuts); media crosses
a real coturn that clients reach only through the UDP impairment relay (loss, bursts, delay,
jitter, reordering), so every RTP/RTCP packet, NACK and retransmission of the room takes the bad
last mile. tests/media/impaired.py builds the rooms; ``bench/impaired.py`` runs the long
profiles and reports the figures (docs/benchmarks.md). Nothing here asserts a timing ratio: the
assertions are counts (lost and duplicated signals, rejoins) and "eventually" conditions.

Timeline (units of ``UNIT``, 50 ms at scale 1): the room is set up on a clean network; then the
media path loses ~8 % (bursts included) with 50 ms ±10 delay each way, and signaling gets 100 ms
±50 each way with an outage every ~20 (stalls of 2-6, a third of them cuts), plus one explicit
cut; numbered signals flow every 4 for at least 120 (and at least two random outages). Then the
signaling path is blackholed: the server must close every session with 4013 within
``max_timeout`` (plus the link's latency), and every client must resume when the path returns.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator

import pytest

from signaling.backoff import Backoff
from signaling.client import Resumed
from signaling.config import HeartbeatConfig, IceConfig
from tests.conftest import LOOPBACK_PEERS, PATIENCE, UNIT, ServerFactory, eventually
from tests.faultproxy import FaultProxy
from tests.media.conftest import media_config
from tests.media.impaired import ImpairedRooms, summary
from tests.media.peers import LOOPBACK, MEDIA_PATIENCE
from tests.netem import GilbertElliott, Impairment, OutageConfig
from tests.turn.conftest import Coturn
from tests.udp_impair import ImpairedUdpRelay

HEARTBEAT = HeartbeatConfig(interval=10 * UNIT, timeout=40 * UNIT, max_timeout=80 * UNIT)
MEDIA = Impairment(
    loss=0.03, bursts=GilbertElliott.bursts(0.05, 2.0), delay=UNIT, jitter=UNIT / 5, reorder=0.02, reorder_by=UNIT / 5
)


@pytest.fixture
async def relay(coturn: Coturn) -> AsyncIterator[ImpairedUdpRelay]:
    relay = await ImpairedUdpRelay((LOOPBACK, coturn.port), up=Impairment(), down=Impairment(), seed=21).start()
    yield relay
    relay.close()
    assert relay.errors == []


@pytest.fixture
async def proxies() -> AsyncIterator[list[FaultProxy]]:
    started: list[FaultProxy] = []
    yield started
    for proxy in started:
        await proxy.close()


async def test_impaired_room_loses_nothing_and_keeps_decoding(
    start_server: ServerFactory, coturn: Coturn, relay: ImpairedUdpRelay, proxies: list[FaultProxy]
) -> None:
    ice = IceConfig(
        turn_urls=(f"turn:{LOOPBACK}:{relay.port}?transport=udp",),
        turn_secrets=(coturn.secrets[0],),
        host_addresses=(LOOPBACK,),
        allow_peers=LOOPBACK_PEERS,
    )
    server = await start_server(dataclasses.replace(media_config(ice), heartbeat=HEARTBEAT))
    proxy = await FaultProxy(server.runner.addresses[0][1]).start()
    proxies.append(proxy)
    proxy.rng = random.Random(5)
    rooms = ImpairedRooms(
        proxy, relay, rooms=1, size=3, signal_every=4 * UNIT,
        backoff=lambda seed: Backoff(base=UNIT, cap=10 * UNIT, rng=random.Random(seed)),
        patience=PATIENCE,
    )
    try:
        await rooms.start()
        room = rooms.rooms[0]
        # The network turns bad.
        relay.set_impairment(up=MEDIA, down=MEDIA)
        proxy.latency, proxy.jitter = 2 * UNIT, UNIT
        proxy.start_outages(OutageConfig(every=20 * UNIT, shortest=2 * UNIT, longest=6 * UNIT, cuts=0.3), random.Random(8))
        first = room.publisher.sent()
        rooms.begin()
        await room.publisher.wait_for(lambda: room.publisher.sent() >= first + 60, what="60 frames sent")
        proxy.cut()  # at least one resume, whatever the random plan did
        await eventually(lambda: len(proxy.outages) >= 3, timeout=MEDIA_PATIENCE, what="random outages")
        await room.publisher.wait_for(lambda: room.publisher.sent() >= first + 120, what="120 frames sent")
        await rooms.end()
        await proxy.stop_outages()
        last = room.publisher.sent()
        await rooms.drain()
        # Media recovered from everything: frames sent after the impaired window are decoded.
        for sub in room.subscribers:
            await sub.wait_decoded_past(last)
        out = rooms.outcome("impaired", {}, {})
        print(summary(out))
        assert out.signals_sent > 0
        assert (out.signals_lost, out.signals_duplicated, out.signals_out_of_order) == (0, 0, 0), summary(out)
        assert (out.retained, out.rejoins, out.closed) == (3, 0, 0), summary(out)
        assert out.resumes >= 1, summary(out)
        assert out.frames_decoded > 0, summary(out)
        up, down = relay.stats()
        assert up.dropped > 0 and down.dropped > 0, "the media path really lost packets"

        # A dead link is still found within the bound, impaired as the link is.
        timeouts = server.metrics.heartbeat_timeouts._value.get()
        resumed = {m.name: len(m.of_type(Resumed)) for m in room.members}
        proxy.blackhole(True)
        bound = HEARTBEAT.max_timeout + 20 * UNIT
        await eventually(
            lambda: server.metrics.heartbeat_timeouts._value.get() >= timeouts + 3, timeout=bound, what="4013 x3"
        )
        proxy.blackhole(False)
        for member in room.members:
            await member.wait_for(lambda m=member: len(m.of_type(Resumed)) > resumed[m.name], what="resumed")
        final = rooms.outcome("after blackhole", {}, {})
        assert (final.rejoins, final.closed) == (0, 0), summary(final)
    finally:
        await rooms.close()
