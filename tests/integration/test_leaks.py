"""2,000 connect/join/disconnect cycles leave nothing behind (tasks, sessions, rooms, memory), and the leak alarm stays quiet."""

from __future__ import annotations

import asyncio
import json
import os
import random

import aiohttp

from signaling.core.config import HeartbeatConfig, LimitsConfig, SessionConfig
from tests.conftest import PATIENCE, UNIT, ServerFactory, eventually, make_config


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def one_cycle(http: aiohttp.ClientSession, url: str, kind: str, room: str) -> None:
    ws = await http.ws_connect(url)
    try:
        if kind == "timeout":  # never join: the server's join timeout closes it
            async with asyncio.timeout(PATIENCE):
                async for _ in ws:
                    pass
            return
        await ws.send_str(json.dumps({"type": "join", "room": room, "name": kind}))
        async with asyncio.timeout(PATIENCE):
            while json.loads((await ws.receive()).data)["type"] != "welcome":
                pass
        if kind == "clean":
            await ws.send_str('{"type":"leave"}')
            async with asyncio.timeout(PATIENCE):
                async for _ in ws:
                    pass
        elif kind == "abort":
            ws._response.connection.transport.abort()  # type: ignore[union-attr]
        elif kind == "close":
            await ws.close()
    finally:
        if not ws.closed:
            await ws.close()


async def test_two_thousand_cycles_return_to_baseline(start_server: ServerFactory) -> None:
    server = await start_server(
        make_config(
            heartbeat=HeartbeatConfig(interval=20 * UNIT, timeout=60 * UNIT),
            session=SessionConfig(grace_period=2 * UNIT, reconnecting_notice_after=1 * UNIT, leak_sample_interval=2 * UNIT),
            limits=LimitsConfig(join_timeout=4 * UNIT, close_timeout=10 * UNIT),
        )
    )
    hub = server.hub
    rng = random.Random(7)
    kinds = ["clean", "abort", "close", "timeout"]
    baseline_tasks = len(asyncio.all_tasks())
    baseline_hub_tasks = hub.task_count
    rss_warm = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for batch in range(40):
            await asyncio.gather(*(one_cycle(http, server.url, rng.choice(kinds), f"room{rng.randrange(10)}") for _ in range(50)))
            if batch == 9:
                await eventually(lambda: hub.session_count == 0 and hub.connection_count == 0)
                rss_warm = rss_bytes()
    await eventually(lambda: hub.session_count == 0 and hub.connection_count == 0 and hub.task_count == baseline_hub_tasks, timeout=PATIENCE * 2)
    assert await hub.backend.rooms() == {}
    await eventually(lambda: len(asyncio.all_tasks()) <= baseline_tasks)
    growth = rss_bytes() - rss_warm
    assert growth < 16 * 1024 * 1024, f"RSS grew {growth / 1e6:.1f} MB over 1,500 cycles"
    closes = {s.labels["code"]: s.value for m in server.metrics.registry.collect() if m.name == "switchboard_closes" for s in m.samples if s.name.endswith("_total")}
    assert closes.get("4010", 0) > 0  # the timeouts really happened
    assert closes.get("1000", 0) > 0
    # The leak alarm watched the whole churn (grace timers ending, sessions released) and stayed quiet.
    assert hub.leaks.alarm.samples > 10
    assert hub.leaks.alerts == 0, hub.leaks.last_alert
