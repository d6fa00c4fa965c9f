"""SFU placement and SFU failover keep working across a Redis failover.

Real processes: primary + replica + 3 sentinels, two ``switchboard sfu`` nodes and one signaling
node on the Sentinel URL, aiortc publishers and subscribers. ``kill -9`` of the Redis primary:
rooms stay where they were placed and media keeps flowing (it never touches Redis); then
``kill -9`` of an SFU node: its rooms move to the other one, as without the Redis failover.

The registry TTL must outlast the Redis failover (sentinel detection + promotion + reconnect,
about 3.5 s here), or every SFU node looks dead when Redis comes back: ``cluster.node_ttl`` is
raised for these nodes (docs/operations.md).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.cluster.conftest import Cluster, Participants
from tests.cluster.media_peers import FailoverPublisher, FailoverSubscriber
from tests.ha.redis_ha import RedisHA

ROOMS = 2
NODE_TTL_ARGS = ("--set", "cluster.node_ttl=8", "--set", "cluster.heartbeat_interval=1")


@pytest.mark.slow
async def test_rooms_stay_placed_and_still_move_off_a_dead_sfu_after_a_redis_failover(
    redis_ha: RedisHA, ha_cluster: Cluster, ha_participants: Participants
) -> None:
    participants = ha_participants
    sfu_a, sfu_b = await asyncio.gather(
        ha_cluster.sfu("sfu-a", args=NODE_TTL_ARGS), ha_cluster.sfu("sfu-b", args=NODE_TTL_ARGS)
    )
    nodes = {"sfu-a": sfu_a, "sfu-b": sfu_b}
    _, url = await ha_cluster.signaling("sig-1", args=NODE_TTL_ARGS)
    registry = ha_cluster.registry()
    rooms = [f"room-{i}" for i in range(ROOMS)]
    subs: dict[str, FailoverSubscriber] = {}
    pubs: dict[str, FailoverPublisher] = {}
    for room in rooms:
        subs[room] = await participants.start(FailoverSubscriber(url, room, f"sub-{room}"))
        pubs[room] = await participants.start(FailoverPublisher(url, room, f"pub-{room}"))
    for sub in subs.values():
        await sub.wait_frames(10)
    placement = {room: await registry.placement(room) for room in rooms}
    assert set(placement.values()) == set(nodes), placement

    old = redis_ha.primary_port()
    assert old is not None
    before = {room: subs[room].frames() for room in rooms}
    redis_ha.server(old).kill()
    await asyncio.to_thread(redis_ha.wait_failover, old)
    # Media never stopped, nobody was moved, the placement is the same on the new primary.
    for room in rooms:
        await subs[room].wait_frames(before[room] + 30)
        assert await registry.placement(room) == placement[room]
        assert not subs[room].reconnects_at and not pubs[room].reconnects_at

    victim = placement[rooms[0]]
    assert victim is not None
    survivor = next(n for n in nodes if n != victim)
    nodes[victim].kill()
    await subs[rooms[0]].wait_frames(5, generation=1)
    for room in rooms:
        assert await registry.placement(room) == survivor
    assert len(pubs[rooms[0]].reconnects_at) == 1
