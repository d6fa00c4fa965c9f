"""Resilience figures: resume latency after a cut, dead-link detection, idle-session capacity.

    python bench/resilience.py                      # all three, default sizes
    python bench/resilience.py --idle 10000         # idle sessions held with heartbeats

* resume: an SDK client behind the fault proxy; the proxy RSTs the connection while the peer
  keeps sending; we time from the cut to the first replayed message (median, p99).
* detection: the path is blackholed; we time until the server closes 4013 and until the client
  declares the server dead, against the configured interval/timeout.
* idle: N joined sessions answering pings, server in its own process; RSS per session and the
  server's CPU while idle.

Loopback only; every phase is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time

import aiohttp
from aiohttp import web

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from signaling.client import Client, Reconnecting, SignalReceived
from signaling.core.backoff import Backoff
from signaling.core.config import HeartbeatConfig, ServerConfig, SessionConfig
from signaling.server.app import METRICS, build_app
from tests.faultproxy import FaultProxy


async def start(config: ServerConfig) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(build_app(config), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


async def bench_resume(cuts: int) -> None:
    runner, port = await start(ServerConfig(port=0, sfu=False))
    proxy = await FaultProxy(port).start()
    # Each cut comes after the connection was stable (stable_after), so every reconnect starts
    # with the contract's immediate first retry; cuts in a burst would (rightly) back off.
    victim = Client(proxy.url, "r", backoff=Backoff(stable_after=0.05, rng=random.Random(1)))
    direct = Client(f"ws://127.0.0.1:{port}/ws", "r")
    await victim.connect()
    await direct.connect()
    assert victim.peer_id is not None
    samples = []
    for n in range(1, cuts + 1):
        await asyncio.sleep(0.1)
        proxy.cut()
        t0 = time.perf_counter()
        await direct.signal(victim.peer_id, {"n": n})
        async with asyncio.timeout(10):
            async for event in victim:
                if isinstance(event, SignalReceived) and event.data["n"] == n:
                    samples.append(time.perf_counter() - t0)
                    break
    samples.sort()
    print(f"resume after cut ({cuts} cuts): median {statistics.median(samples) * 1000:.1f} ms, "
          f"p99 {samples[int(len(samples) * 0.99) - 1] * 1000:.1f} ms, max {samples[-1] * 1000:.1f} ms "
          f"(resumes {victim.resumes}, rejoins {victim.rejoins})")
    await victim.close()
    await direct.close()
    await proxy.close()
    await runner.cleanup()


async def bench_detection(rounds: int, interval: float, timeout: float) -> None:
    config = ServerConfig(port=0, sfu=False, heartbeat=HeartbeatConfig(interval=interval, timeout=timeout),
                          session=SessionConfig(grace_period=60))
    runner, port = await start(config)
    metrics = runner.app[METRICS]
    server_times, client_times = [], []
    for i in range(rounds):
        proxy = await FaultProxy(port).start()
        client = Client(proxy.url, "r", backoff=Backoff(rng=random.Random(i)), connect_timeout=1)
        await client.connect()
        await asyncio.sleep(random.Random(i).uniform(0, interval))  # blackhole at a random phase
        before = metrics.heartbeat_timeouts._value.get()
        proxy.blackhole(True)
        t0 = time.perf_counter()
        got_client = got_server = False
        async with asyncio.timeout(timeout * 3):
            while not (got_client and got_server):
                if not got_server and metrics.heartbeat_timeouts._value.get() > before:
                    server_times.append(time.perf_counter() - t0)
                    got_server = True
                if not got_client:
                    try:
                        async with asyncio.timeout(0.01):
                            event = await client.next_event()
                        if isinstance(event, Reconnecting):
                            client_times.append(time.perf_counter() - t0)
                            got_client = True
                    except TimeoutError:
                        pass
                await asyncio.sleep(0.005)
        await client.close()
        await proxy.close()
    await runner.cleanup()
    for name, xs in (("server (4013)", server_times), ("client (dead server)", client_times)):
        print(f"dead-link detection, {name}: min {min(xs):.2f} s, median {statistics.median(xs):.2f} s, "
              f"max {max(xs):.2f} s (interval {interval} s, timeout {timeout} s, {rounds} rounds)")


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench_idle(count: int, interval: float) -> None:
    port = 18000 + random.randrange(1000)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signaling", "serve", "--port", str(port), "--log-level", "error",
        "--heartbeat-interval", str(interval), "--heartbeat-timeout", str(interval * 2),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    await proc.stdout.readline()
    base_rss = rss_of(proc.pid)
    sockets = []

    async def keep(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            data = json.loads(msg.data)
            if data["type"] == "ping":
                await ws.send_str(json.dumps({"type": "pong", "t": data["t"]}))

    holders = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        t0 = time.perf_counter()
        for i in range(count):
            ws = await http.ws_connect(f"ws://127.0.0.1:{port}/ws")
            await ws.send_str(json.dumps({"type": "join", "room": f"idle{i % 500}", "subscribe": False}))
            await ws.receive()
            sockets.append(ws)
            holders.append(asyncio.create_task(keep(ws)))
        join_s = time.perf_counter() - t0
        rss = rss_of(proc.pid)
        cpu0 = cpu_of(proc.pid)
        await asyncio.sleep(interval * 2)
        cpu = (cpu_of(proc.pid) - cpu0) / (interval * 2)
        print(f"idle sessions: {count} joined in {join_s:.1f} s; server RSS +{(rss - base_rss) / 1e6:.0f} MB "
              f"= {(rss - base_rss) / count / 1024:.1f} KiB/session; server CPU while idle {cpu * 100:.1f} % "
              f"of a core with pings every {interval} s")
        for t in holders:
            t.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
        for ws in sockets:
            await ws.close()
    proc.terminate()
    await proc.wait()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cuts", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--interval", type=float, default=10.0)
    args = ap.parse_args()
    await bench_resume(args.cuts)
    await bench_detection(args.rounds, interval=1.0, timeout=3.0)
    if args.idle:
        await bench_idle(args.idle, args.interval)


if __name__ == "__main__":
    asyncio.run(main())
