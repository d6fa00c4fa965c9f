"""The silence timeout adapts to a slow, jittery link: no false 4013, and a dead link is still found.

The link: the fault proxy adds 200 ms one-way latency +-200 ms per chunk in each direction
(400 ms RTT on average, 0 to 800 ms), in scaled time (4 UNIT = 200 ms at scale 1). The configured
timeout is tight on purpose (1.3 intervals): the clients send nothing but pongs, which can be
1.1 intervals + 0.8 s apart, so a fixed timeout closes healthy sessions (about one gap in ten);
the adaptive one grows to its cap (3 intervals).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from signaling.client import Client, Reconnecting
from signaling.core.backoff import Backoff
from signaling.core.config import HeartbeatConfig
from tests.conftest import PATIENCE, UNIT, ServerFactory, eventually, make_config
from tests.faultproxy import FaultProxy
from tests.raw import Raw

SLOW_LINK = {"latency": 4 * UNIT, "jitter": 4 * UNIT}


def heartbeat(rtt_factor: float) -> HeartbeatConfig:
    return HeartbeatConfig(interval=20 * UNIT, timeout=26 * UNIT, jitter=0.1, rtt_factor=rtt_factor, max_timeout=60 * UNIT)


@pytest.fixture
async def slow_proxy() -> AsyncIterator[list[FaultProxy]]:
    proxies: list[FaultProxy] = []
    yield proxies
    for proxy in proxies:
        await proxy.close()


async def start_slow(proxies: list[FaultProxy], upstream: int, seed: int) -> FaultProxy:
    proxy = await FaultProxy(upstream).start()
    proxy.latency, proxy.jitter = SLOW_LINK["latency"], SLOW_LINK["jitter"]
    proxy.rng = random.Random(seed)
    proxies.append(proxy)
    return proxy


async def test_no_false_4013_at_400ms_rtt_with_jitter(start_server: ServerFactory, slow_proxy: list[FaultProxy]) -> None:
    server = await start_server(make_config(heartbeat=heartbeat(rtt_factor=3)))
    proxy = await start_slow(slow_proxy, server.runner.addresses[0][1], seed=7)
    backoff = Backoff(base=UNIT / 10, cap=UNIT, stable_after=10 * UNIT, rng=random.Random(1))
    alice = Client(proxy.url, "room", name="alice", backoff=backoff)
    bob = Client(proxy.url, "room", name="bob", backoff=Backoff(base=UNIT / 10, cap=UNIT, rng=random.Random(2)))
    await alice.connect()
    await bob.connect()
    assert alice.peer_id and bob.peer_id
    trouble: list[object] = []

    async def watch(client: Client) -> None:
        async for event in client:
            if isinstance(event, Reconnecting):
                trouble.append(event)

    watchers = [asyncio.create_task(watch(c)) for c in (alice, bob)]
    try:
        # 20 pings each, and nothing else from the clients: at this link's spread a fixed
        # 1.3-interval timeout closes at least one of them (rtt_factor=0 shows it).
        await eventually(lambda: server.metrics.messages_out.labels("ping")._value.get() >= 40, timeout=PATIENCE)
        assert server.metrics.heartbeat_timeouts._value.get() == 0
        assert trouble == []
        assert proxy.connections == 2, "nobody had to reconnect"
        # The server measured the slow link, and told the client.
        assert alice.rtt_ms is not None and alice.rtt_ms > 0
        assert server.hub.sessions()[0].rtt is not None
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await alice.close()
        await bob.close()


async def test_blackhole_is_still_detected_within_the_bound(
    start_server: ServerFactory, slow_proxy: list[FaultProxy]
) -> None:
    config = make_config(heartbeat=heartbeat(rtt_factor=3))
    server = await start_server(config)
    proxy = await start_slow(slow_proxy, server.runner.addresses[0][1], seed=9)
    raw = await Raw.joined(proxy.url)
    announced: list[int] = []
    # Answer pings until the server announced a timeout above the configured one (it adapted).
    async with asyncio.timeout(PATIENCE):
        while not announced or announced[-1] <= round(config.heartbeat.timeout * 1000):
            msg = await raw.recv(skip_pings=False)
            if msg["type"] == "ping":
                await raw.send({"type": "pong", "t": msg["t"]})
                if "timeout_ms" in msg:
                    announced.append(msg["timeout_ms"])
    assert announced[-1] <= round(config.heartbeat.max_timeout * 1000)
    loop = asyncio.get_running_loop()
    proxy.blackhole(True)
    start = loop.time()
    # The bound is the cap (plus the latency of the last pong already in flight and a ping wake-up).
    async with asyncio.timeout(config.heartbeat.max_timeout + 20 * UNIT):
        await eventually(lambda: server.metrics.heartbeat_timeouts._value.get() == 1,
                         timeout=config.heartbeat.max_timeout + 20 * UNIT)
    assert loop.time() - start >= config.heartbeat.timeout - 8 * UNIT
    await raw.close()
