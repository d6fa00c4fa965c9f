"""Relay throughput and latency: Switchboard vs a naive aiohttp relay, measured in one run.

Each server runs in its own process; this process drives N pairs of raw WebSocket clients. In
every pair, A keeps ``--window`` signals of 1-4 KB in flight to B; B timestamps arrivals. Both
servers get the same load for the same time. Switchboard does more per message (schema
validation, seq stamping, replay buffer, acks, room checks); the ratio says what that costs.

    python bench/relay.py --pairs 50 --seconds 5

Loopback only; bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web

SCRIPT = os.path.abspath(__file__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the baseline: the textbook upgrade-and-forward loop -------------------------------------------


def naive_app() -> web.Application:
    peers: dict[str, web.WebSocketResponse] = {}

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        me = None
        async for msg in ws:
            data = json.loads(msg.data)
            if data["type"] == "join":
                me = data["name"]
                peers[me] = ws
                await ws.send_str(json.dumps({"type": "welcome", "peer": me}))
            elif data["type"] == "signal" and data["to"] in peers:
                await peers[data["to"]].send_str(json.dumps({"type": "signal", "from": me, "data": data["data"]}))
        if me is not None:
            peers.pop(me, None)
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    return app


# -- load ------------------------------------------------------------------------------------------


async def pair(http: aiohttp.ClientSession, url: str, idx: int, seconds: float, window: int, lat: list[float], count: list[int]) -> None:
    a = await http.ws_connect(url)
    b = await http.ws_connect(url)
    room = f"bench{idx}"
    await a.send_str(json.dumps({"type": "join", "room": room, "name": f"a{idx}", "subscribe": False}))
    wa = json.loads((await a.receive()).data)
    await b.send_str(json.dumps({"type": "join", "room": room, "name": f"b{idx}", "subscribe": False}))
    wb = json.loads((await b.receive()).data)
    b_id = wb["peer"]
    del wa
    rng = random.Random(idx)
    payloads = ["x" * rng.randrange(1000, 4000) for _ in range(16)]
    credit = asyncio.Semaphore(window)
    deadline = time.perf_counter() + seconds
    cseq = 0

    async def reader_b() -> None:
        last_seq = 0
        async for msg in b:
            data = json.loads(msg.data)
            if data["type"] == "signal":
                lat.append(time.perf_counter() - data["data"]["t"])
                count[0] += 1
                credit.release()
                seq = data.get("seq")
                if seq and seq - last_seq >= 32:
                    last_seq = seq
                    await b.send_str(json.dumps({"type": "ack", "seq": seq}))
            elif data["type"] == "ping":
                await b.send_str(json.dumps({"type": "pong", "t": data["t"]}))

    async def reader_a() -> None:
        async for msg in a:
            data = json.loads(msg.data)
            if data["type"] == "ping":
                await a.send_str(json.dumps({"type": "pong", "t": data["t"]}))
            elif data.get("seq") and data["type"] != "ping":
                await a.send_str(json.dumps({"type": "ack", "seq": data["seq"]}))

    async def quietly(reader: Any) -> None:
        with contextlib.suppress(ConnectionError):
            await reader

    rb = asyncio.create_task(quietly(reader_b()))
    ra = asyncio.create_task(quietly(reader_a()))
    while time.perf_counter() < deadline:
        await credit.acquire()
        cseq += 1
        msg = {"type": "signal", "to": b_id, "cseq": cseq, "data": {"t": time.perf_counter(), "sdp": payloads[cseq % 16]}}
        await a.send_str(json.dumps(msg))
    await asyncio.sleep(0.2)
    for t in (ra, rb):
        t.cancel()
    await asyncio.gather(ra, rb, return_exceptions=True)
    await a.close()
    await b.close()


async def drive(url: str, pairs: int, seconds: float, window: int) -> dict[str, float]:
    lat: list[float] = []
    count = [0]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        start = time.perf_counter()
        await asyncio.gather(*(pair(http, url, i, seconds, window, lat, count) for i in range(pairs)))
        elapsed = time.perf_counter() - start - 0.2
    lat.sort()
    return {
        "msgs_per_s": count[0] / elapsed,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
    }


async def run_server(cmd: list[str]) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        await proc.stdout.readline()
    return proc


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--window", type=int, default=4, help="signals in flight per pair")
    ap.add_argument("--naive-server", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.naive_server:
        runner = web.AppRunner(naive_app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.naive_server).start()
        print("listening", flush=True)
        await asyncio.Event().wait()
    results: dict[str, dict[str, float]] = {}
    for name in ("switchboard", "naive"):
        port = free_port()
        if name == "switchboard":
            # A throughput test is a flood by design: lift the per-connection rate limit
            # (default 100 msgs/s) so the relay, not the limiter, is measured.
            cmd = [sys.executable, "-m", "signaling", "serve", "--port", str(port), "--log-level", "error", "--no-sfu",
                   "--set", "security.message_rate=1e9", "--set", "security.message_burst=1e9"]
        else:
            cmd = [sys.executable, SCRIPT, "--naive-server", str(port)]
        proc = await run_server(cmd)
        try:
            results[name] = await drive(f"ws://127.0.0.1:{port}/ws", args.pairs, args.seconds, args.window)
        finally:
            proc.terminate()
            await proc.wait()
    print(f"{args.pairs} pairs, {args.seconds:.0f} s, window {args.window}, payload 1-4 KB")
    print(f"{'server':<12} {'msgs/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in results.items():
        print(f"{name:<12} {r['msgs_per_s']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}")
    s, n = results["switchboard"], results["naive"]
    print(f"ratio switchboard/naive: throughput {s['msgs_per_s'] / n['msgs_per_s']:.2f}x, "
          f"p50 {s['p50_ms'] / n['p50_ms']:.2f}x, p99 {s['p99_ms'] / n['p99_ms']:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
