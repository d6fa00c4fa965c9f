"""kill -9 of a signaling node process mid-stream: its clients resume on another node, and every
numbered message arrives exactly once, in order, in both directions.

Real node processes on one real Redis; the clients are the Python SDK, given both nodes' URLs as a
client behind a load balancer would reach them (it moves on when a node refuses connections).
"""

from __future__ import annotations

import asyncio
import time

from signaling.client import Client, Resumed, SignalReceived
from signaling.core.backoff import Backoff
from tests.backend.conftest import UNIT
from tests.cluster.conftest import Cluster
from tests.conftest import PATIENCE

#: Signaling only: these nodes run no media, and nothing here may be rate limited.
NODE_ARGS = ("--no-sfu", "--set", "security.message_rate=100000", "--set", "security.message_burst=100000")
COUNT = 400


async def _numbers(client: Client, count: int, resumed: asyncio.Event | None = None) -> list[int]:
    got: list[int] = []
    async with asyncio.timeout(PATIENCE * 4):
        async for event in client:
            if isinstance(event, Resumed) and resumed is not None:
                resumed.set()
            if isinstance(event, SignalReceived):
                got.append(event.data["n"])
                if len(got) == count:
                    break
    return got


async def test_kill_9_of_a_signaling_node_mid_stream_loses_and_repeats_nothing(cluster: Cluster) -> None:
    doomed, url_a = await cluster.signaling("sig-a", args=NODE_ARGS)
    _survivor, url_b = await cluster.signaling("sig-b", args=NODE_ARGS)
    fast = Backoff(base=UNIT, cap=10 * UNIT)
    alice = Client([url_a, url_b], "room", name="alice", backoff=fast)
    bob = Client([url_b, url_a], "room", name="bob", backoff=Backoff(base=UNIT, cap=10 * UNIT))
    await alice.connect()
    await bob.connect()
    assert alice.peer_id is not None and bob.peer_id is not None
    session = alice.session_id
    alice_resumed = asyncio.Event()
    try:
        to_bob = asyncio.create_task(_numbers(bob, COUNT))
        to_alice = asyncio.create_task(_numbers(alice, COUNT, alice_resumed))
        killed_at = 0.0
        for n in range(1, COUNT + 1):
            await alice.signal(bob.peer_id, {"n": n})
            await bob.signal(alice.peer_id, {"n": n})
            if n % 20 == 0:
                await asyncio.sleep(0)  # let the streams flow while we send
            if n == COUNT // 3:
                doomed.kill()
                killed_at = time.monotonic()
        assert await to_bob == list(range(1, COUNT + 1))
        assert await to_alice == list(range(1, COUNT + 1))
        assert alice_resumed.is_set()
        print(f"kill -9 -> alice resumed on sig-b and received everything: {time.monotonic() - killed_at:.2f} s")
        assert alice.session_id == session and alice.rejoins == 0 and alice.url == url_b
        assert bob.rejoins == 0
    finally:
        await alice.close()
        await bob.close()
