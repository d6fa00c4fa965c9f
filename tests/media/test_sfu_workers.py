"""``switchboard serve --sfu-workers 2``: rooms placed on two SFU worker processes, media through
both, and a worker killed with SIGKILL: its room moves to the other worker, its clients redo media
(``reconnect {mode: "rejoin", scope: "media"}``) and decode again, the other room never notices,
and the pool starts a replacement worker.

Real processes and real aiortc peers on loopback (the SDK participants of the cluster failover
tests); no Redis anywhere.
"""

from __future__ import annotations

import os
import signal

import pytest

from signaling.server.app import SFU_WORKERS
from tests.cluster.media_peers import FailoverPublisher, FailoverSubscriber
from tests.conftest import eventually
from tests.media.conftest import MediaServerFactory, Peers


async def test_rooms_land_on_different_workers_and_a_killed_workers_room_moves(
    media_server: MediaServerFactory, peers: Peers
) -> None:
    server = await media_server(sfu_workers=2)
    pool = server.app[SFU_WORKERS]
    first_workers = pool.worker_ids()
    assert len(first_workers) == 2

    rooms = ["room-a", "room-b"]
    subs: dict[str, FailoverSubscriber] = {}
    pubs: dict[str, FailoverPublisher] = {}
    for room in rooms:
        subs[room] = await peers.start(FailoverSubscriber(server.url, room, f"sub-{room}"))
        pubs[room] = await peers.start(FailoverPublisher(server.url, room, f"pub-{room}"))
    for sub in subs.values():
        await sub.wait_frames(10)

    placement = {room: await pool.registry.placement(room) for room in rooms}
    assert set(placement.values()) == set(first_workers), f"rooms not spread over both workers: {placement}"

    victim_room, other_room = rooms
    victim = placement[victim_room]
    assert victim is not None
    pid = pool.pid_of(victim)
    assert pid is not None
    frames_before = subs[other_room].frames()
    os.kill(pid, signal.SIGKILL)

    # The documented media failover: told once, published again, decoding on a new connection.
    await subs[victim_room].wait_frames(5, generation=1)
    assert len(subs[victim_room].reconnects_at) == 1
    assert len(pubs[victim_room].reconnects_at) == 1
    assert len(pubs[victim_room].published_at) == 2
    moved_to = await pool.registry.placement(victim_room)
    assert moved_to is not None and moved_to != victim
    # The room on the surviving worker kept going without a media reconnect.
    await subs[other_room].wait_frames(frames_before + 10)
    assert not subs[other_room].reconnects_at and not pubs[other_room].reconnects_at
    assert await pool.registry.placement(other_room) == placement[other_room]
    # Signaling was not touched.
    for participant in (*subs.values(), *pubs.values()):
        assert (participant.client.resumes, participant.client.rejoins) == (0, 0)
    # A replacement worker with a new id takes the dead one's place.
    await eventually(lambda: len(pool.worker_ids()) == 2 and victim not in pool.worker_ids())
    assert pool.restarts == 1


@pytest.mark.slow
async def test_sigterm_drains_a_worker_its_room_moves_and_a_replacement_starts(
    media_server: MediaServerFactory, peers: Peers
) -> None:
    server = await media_server(sfu_workers=2)
    pool = server.app[SFU_WORKERS]
    sub = await peers.start(FailoverSubscriber(server.url, "room-d", "sub-d"))
    pub = await peers.start(FailoverPublisher(server.url, "room-d", "pub-d"))
    await sub.wait_frames(10)
    victim = await pool.registry.placement("room-d")
    assert victim is not None
    pid = pool.pid_of(victim)
    assert pid is not None

    os.kill(pid, signal.SIGTERM)

    # Handed over while the worker still forwards, then the worker exits and is replaced.
    await sub.wait_frames(5, generation=1)
    assert len(sub.reconnects_at) == 1 and len(pub.reconnects_at) == 1
    assert await pool.registry.placement("room-d") not in (None, victim)
    await eventually(lambda: len(pool.worker_ids()) == 2 and victim not in pool.worker_ids())
