"""The SDK and the server under injected faults: cuts, blackholes, restarts."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from signaling.client import Client, Closed, Reconnecting, Rejoined, Resumed, SignalReceived
from signaling.core.backoff import Backoff
from signaling.core.config import HeartbeatConfig, SessionConfig
from tests.conftest import PATIENCE, UNIT, ServerFactory, eventually, make_config
from tests.faultproxy import FaultProxy


def fast_backoff(seed: int) -> Backoff:
    return Backoff(base=UNIT / 10, cap=UNIT, stable_after=10 * UNIT, rng=random.Random(seed))


@pytest.fixture
async def proxy_factory() -> AsyncIterator[list[FaultProxy]]:
    proxies: list[FaultProxy] = []
    yield proxies
    for proxy in proxies:
        await proxy.close()


async def collect(client: Client, peer: str, count: int, into: list[int]) -> None:
    async for event in client:
        if isinstance(event, SignalReceived) and event.sender == peer:
            into.append(event.data["n"])
            if len(into) >= count:
                return


async def test_thousand_random_cuts_lose_and_duplicate_nothing(
    start_server: ServerFactory, proxy_factory: list[FaultProxy]
) -> None:
    # The replay buffer must hold what a peer can send while the other is cut off; the default
    # (512) is sized for signaling rates, this test blasts at loopback speed.
    server = await start_server(
        make_config(session=SessionConfig(grace_period=400 * UNIT, replay_max_messages=20_000, replay_max_bytes=64 << 20))
    )
    proxy = await FaultProxy(server.runner.addresses[0][1]).start()
    proxy_factory.append(proxy)
    count, cuts_wanted = 3000, 1000
    rng = random.Random(1234)
    alice = Client(proxy.url, "room", name="alice", backoff=fast_backoff(1), ack_every=8)
    bob = Client(proxy.url, "room", name="bob", backoff=fast_backoff(2), ack_every=8)
    await alice.connect()
    await bob.connect()
    assert alice.peer_id and bob.peer_id
    got_by_alice: list[int] = []
    got_by_bob: list[int] = []

    async def sender(src: Client, dst: str) -> None:
        for n in range(count):
            await src.signal(dst, {"n": n})
            if n % 4 == 0:
                await asyncio.sleep(0)

    async def cutter() -> int:
        cuts = 0
        while cuts < cuts_wanted and (len(got_by_alice) < count or len(got_by_bob) < count):
            await eventually(lambda: proxy.active >= 1)
            # a random point: right away, or after some traffic went through
            for _ in range(rng.randrange(0, 30)):
                await asyncio.sleep(0)
            cuts += proxy.cut() > 0
        return cuts

    async with asyncio.timeout(3000 * UNIT):
        cut_task = asyncio.create_task(cutter())
        await asyncio.gather(
            sender(alice, bob.peer_id),
            sender(bob, alice.peer_id),
            collect(alice, bob.peer_id, count, got_by_alice),
            collect(bob, alice.peer_id, count, got_by_bob),
        )
        cuts = await cut_task
        # keep cutting until the quota is met, with traffic idle: resume must still hold
        while cuts < cuts_wanted:
            await eventually(lambda: proxy.active >= 2)
            cuts += proxy.cut() > 0
    assert got_by_alice == list(range(count))
    assert got_by_bob == list(range(count))
    assert cuts >= cuts_wanted
    assert alice.rejoins == 0 and bob.rejoins == 0
    assert alice.resumes + bob.resumes >= cuts_wanted
    await alice.close()
    await bob.close()


async def test_blackhole_detected_on_both_sides_then_recovered(
    start_server: ServerFactory, proxy_factory: list[FaultProxy]
) -> None:
    interval, timeout = 2 * UNIT, 8 * UNIT
    server = await start_server(
        make_config(heartbeat=HeartbeatConfig(interval=interval, timeout=timeout), session=SessionConfig(grace_period=400 * UNIT))
    )
    proxy = await FaultProxy(server.runner.addresses[0][1]).start()
    proxy_factory.append(proxy)
    client = Client(proxy.url, "room", backoff=fast_backoff(3), connect_timeout=4 * UNIT)
    await client.connect()
    loop = asyncio.get_running_loop()
    proxy.blackhole(True)
    start = loop.time()
    await eventually(lambda: server.metrics.heartbeat_timeouts._value.get() == 1)
    server_detect = loop.time() - start
    reconnecting = None
    async with asyncio.timeout(PATIENCE):
        async for event in client:
            if isinstance(event, Reconnecting):
                reconnecting = loop.time() - start
                break
    assert reconnecting is not None
    # bounds: server within interval + timeout (+ jitter), client within its announced timeout
    assert server_detect <= timeout * 1.1 + interval + 4 * UNIT
    assert reconnecting <= timeout + 4 * UNIT
    proxy.blackhole(False)
    async with asyncio.timeout(PATIENCE):
        async for event in client:
            if isinstance(event, Resumed):
                break
    assert client.rejoins == 0
    await client.close()


async def test_server_restart_memory_backend_means_rejoin(start_server: ServerFactory) -> None:
    first = await start_server(make_config())
    port = first.runner.addresses[0][1]
    client = Client(first.url, "room", name="a", backoff=fast_backoff(4))
    await client.connect()
    old_peer = client.peer_id
    await first.stop()
    await start_server(make_config(port=port))
    async with asyncio.timeout(PATIENCE):
        async for event in client:
            if isinstance(event, Rejoined):
                assert event.peer != old_peer
                break
            assert not isinstance(event, Closed)
    assert client.peer_id != old_peer and client.rejoins == 1
    await client.close()


@pytest.mark.parametrize(("code", "fatal"), [(4006, True), (4001, True), (4003, True), (4010, True), (1001, False)])
async def test_close_codes_decide_retry(start_server: ServerFactory, code: int, fatal: bool) -> None:
    from signaling.core.codes import Close

    server = await start_server(make_config(admin_token="t"))
    client = Client(server.url, "room", backoff=fast_backoff(5))
    await client.connect()
    live = server.hub.sessions()[0]
    entry = Close.by_code(code)
    assert entry is not None and live.conn is not None
    live.conn.close(entry, "test")
    async with asyncio.timeout(PATIENCE):
        async for event in client:
            if isinstance(event, Closed):
                assert fatal and event.code == code
                break
            if isinstance(event, Resumed):
                assert not fatal
                break
    await client.close()
