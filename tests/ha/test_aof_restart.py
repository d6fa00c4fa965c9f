"""The whole Redis (primary and replica) restarts with AOF on: sessions survive it.

Two signaling nodes on the Sentinel URL, a client on each exchanging numbered signals; both Redis
servers are killed with ``kill -9`` and started again on the same data directories. The nodes
resync, the streams go on (nothing lost or repeated), and a client whose node then dies resumes
its session on the other node from the ledger that came back from the AOF.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from signaling.client import Client, SignalReceived
from signaling.core.backoff import Backoff
from tests.backend.conftest import UNIT
from tests.cluster.conftest import Cluster
from tests.cluster.procs import Processes
from tests.conftest import PATIENCE
from tests.ha.redis_ha import RedisHA

NODE_ARGS = ("--no-sfu", "--set", "security.message_rate=100000", "--set", "security.message_burst=100000")


async def _numbers(client: Client, count: int) -> list[int]:
    got: list[int] = []
    async with asyncio.timeout(PATIENCE * 2):
        async for event in client:
            if isinstance(event, SignalReceived):
                got.append(event.data["n"])
                if len(got) == count:
                    break
    return got


@pytest.mark.slow
async def test_sessions_survive_a_restart_of_the_whole_redis_with_aof(
    redis_ha_factory: Callable[..., RedisHA], prefix: str, procs: Processes
) -> None:
    ha = redis_ha_factory(aof=True)
    cluster = Cluster(ha.url, prefix, procs)
    node_a, url_a = await cluster.signaling("sig-a", args=NODE_ARGS)
    _node_b, url_b = await cluster.signaling("sig-b", args=NODE_ARGS)
    alice = Client([url_a, url_b], "room", name="alice", backoff=Backoff(base=UNIT, cap=10 * UNIT))
    bob = Client([url_b, url_a], "room", name="bob", backoff=Backoff(base=UNIT, cap=10 * UNIT))
    await alice.connect()
    await bob.connect()
    assert alice.peer_id is not None and bob.peer_id is not None
    session = alice.session_id
    try:
        total = 150
        to_bob = asyncio.create_task(_numbers(bob, total))
        to_alice = asyncio.create_task(_numbers(alice, total))
        for n in range(1, 51):
            await alice.signal(bob.peer_id, {"n": n})
            await bob.signal(alice.peer_id, {"n": n})
        # Everything so far is written; both servers die and come back from their AOF.
        for server in ha.servers:
            server.kill()
        for server in ha.servers:  # primary first: the sentinels must not promote the replica
            server.start()
        for n in range(51, 101):
            await alice.signal(bob.peer_id, {"n": n})
            await bob.signal(alice.peer_id, {"n": n})
        # alice's node dies: she resumes on sig-b from the ledger that survived the restart.
        node_a.kill()
        for n in range(101, total + 1):
            await alice.signal(bob.peer_id, {"n": n})
            await bob.signal(alice.peer_id, {"n": n})
        assert await to_bob == list(range(1, total + 1))
        assert await to_alice == list(range(1, total + 1))
        assert alice.session_id == session and alice.rejoins == 0 and bob.rejoins == 0
        assert alice.url == url_b and alice.resumes >= 1
    finally:
        await alice.close()
        await bob.close()
