"""The cluster follows a Sentinel failover of its Redis primary.

Real processes on loopback: a primary, a replica and three sentinels (``redis_ha.py``), two
signaling nodes started with the ``redis+sentinel://`` URL, clients of the Python SDK on both
nodes. ``kill -9`` of the primary while they relay numbered signals: every number arrives once,
in order, and the sessions in Redis survived (a client still resumes on the other node).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import aiohttp

from signaling.client import Client, Resumed, SignalReceived
from signaling.core.backoff import Backoff
from tests.backend.conftest import UNIT
from tests.cluster.conftest import Cluster
from tests.conftest import PATIENCE
from tests.ha.redis_ha import DOWN_AFTER_MS, RedisHA

NODE_ARGS = ("--no-sfu", "--set", "security.message_rate=100000", "--set", "security.message_burst=100000")
COUNT = 300
#: After the kill: sentinel detection + election + promotion (a few seconds), then the nodes'
#: reconnect backoff (capped at 2 s) and resync. The test fails if the nodes need longer.
FOLLOW_BOUND = DOWN_AFTER_MS / 1000 + 10.0


def _http(ws_url: str) -> str:
    return ws_url.replace("ws://", "http://").removesuffix("/ws")


async def _numbers(client: Client, count: int, seen: Callable[[int], None] | None = None) -> list[int]:
    got: list[int] = []
    async with asyncio.timeout(PATIENCE * 2):
        async for event in client:
            if isinstance(event, SignalReceived):
                got.append(event.data["n"])
                if seen is not None:
                    seen(event.data["n"])
                if len(got) == count:
                    break
    return got


class ReadyWatch:
    """Polls ``/readyz`` of some nodes; records when each turned unready and ready again."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.unready_at: dict[str, float] = {}
        self.ready_again_at: dict[str, float] = {}

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as http:
            while not stop.is_set():
                for url in self.urls:
                    try:
                        async with http.get(url + "/readyz") as response:
                            ok = response.status == 200
                    except (aiohttp.ClientError, TimeoutError):
                        ok = False
                    now = time.monotonic()
                    if not ok:
                        self.unready_at.setdefault(url, now)
                        self.ready_again_at.pop(url, None)
                    elif url in self.unready_at:
                        self.ready_again_at.setdefault(url, now)
                await asyncio.sleep(UNIT)


async def test_kill_9_of_the_redis_primary_mid_stream_loses_and_repeats_nothing(
    redis_ha: RedisHA, ha_cluster: Cluster
) -> None:
    node_a, url_a = await ha_cluster.signaling("sig-a", args=NODE_ARGS)
    node_b, url_b = await ha_cluster.signaling("sig-b", args=NODE_ARGS)
    fast = Backoff(base=UNIT, cap=10 * UNIT)
    alice = Client([url_a, url_b], "room", name="alice", backoff=fast)
    bob = Client([url_b, url_a], "room", name="bob", backoff=Backoff(base=UNIT, cap=10 * UNIT))
    await alice.connect()
    await bob.connect()
    assert alice.peer_id is not None and bob.peer_id is not None
    session_a, session_b = alice.session_id, bob.session_id
    watch = ReadyWatch([_http(url_a), _http(url_b)])
    stop_watch = asyncio.Event()
    watcher = asyncio.create_task(watch.run(stop_watch))
    killed_at = 0.0
    arrivals: list[float] = []

    def seen(_n: int) -> None:
        arrivals.append(time.monotonic())

    try:
        to_bob = asyncio.create_task(_numbers(bob, COUNT, seen))
        to_alice = asyncio.create_task(_numbers(alice, COUNT, seen))
        old_primary = redis_ha.primary_port()
        assert old_primary is not None
        for n in range(1, COUNT + 1):
            await alice.signal(bob.peer_id, {"n": n})
            await bob.signal(alice.peer_id, {"n": n})
            if n % 10 == 0:
                await asyncio.sleep(UNIT / 5)  # a steady stream across the failover, not one burst
            if n == COUNT // 3:
                redis_ha.server(old_primary).kill()
                killed_at = time.monotonic()
        new_primary = await asyncio.to_thread(redis_ha.wait_failover, old_primary)
        promoted_at = time.monotonic()
        assert await to_bob == list(range(1, COUNT + 1))
        assert await to_alice == list(range(1, COUNT + 1))
        delivered_at = time.monotonic()
        # Both nodes were unready while they could not write, and are ready again.
        async with asyncio.timeout(FOLLOW_BOUND):
            while len(watch.ready_again_at) < 2:
                await asyncio.sleep(UNIT)
        assert set(watch.unready_at) == set(watch.urls)
        back = max(watch.ready_again_at.values())
        assert back - killed_at < FOLLOW_BOUND
        print(
            f"\nprimary {old_primary} killed -> {new_primary} promoted after {promoted_at - killed_at:.2f} s; "
            f"longest pause in the streams {max(b - a for a, b in itertools.pairwise(arrivals)):.2f} s; "
            f"both nodes ready again after {back - killed_at:.2f} s; "
            f"all {COUNT} x 2 delivered {delivered_at - killed_at:.2f} s after the kill"
        )
        # The same sessions, no rejoin: nothing was lost in Redis.
        assert (alice.session_id, bob.session_id) == (session_a, session_b)
        assert alice.rejoins == 0 and bob.rejoins == 0

        # The ledger survived the failover: alice's node dies, she resumes on the other one.
        # (While Redis was failing over, refused resumes may have moved her to either node.)
        on_a = alice.url == url_a
        victim, other_url = (node_a, url_b) if on_a else (node_b, url_a)
        resumed = asyncio.Event()
        victim.kill()
        more = 30

        async def alice_gets() -> list[int]:
            got: list[int] = []
            async with asyncio.timeout(PATIENCE * 2):
                async for event in alice:
                    if isinstance(event, Resumed):
                        resumed.set()
                    if isinstance(event, SignalReceived):
                        got.append(event.data["n"])
                        if len(got) == more:
                            break
            return got

        to_alice = asyncio.create_task(alice_gets())
        to_bob = asyncio.create_task(_numbers(bob, more))
        for n in range(COUNT + 1, COUNT + more + 1):
            await alice.signal(bob.peer_id, {"n": n})
            await bob.signal(alice.peer_id, {"n": n})
        assert await to_alice == list(range(COUNT + 1, COUNT + more + 1))
        assert await to_bob == list(range(COUNT + 1, COUNT + more + 1))
        assert resumed.is_set() and alice.url == other_url
        assert alice.session_id == session_a and alice.rejoins == 0
    finally:
        stop_watch.set()
        await watcher
        await alice.close()
        await bob.close()
