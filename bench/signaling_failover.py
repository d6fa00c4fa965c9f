"""Signaling failover benchmark: kill -9 a signaling node, time until its clients resume elsewhere.

    python bench/signaling_failover.py                 # 3 runs, 20 clients on the doomed node
    python bench/signaling_failover.py --runs 5 --clients 50

Each run: one redis-server, two ``switchboard serve --redis --no-sfu`` processes (a, b) on
loopback. ``--clients`` receivers join node a (their SDK knows both URLs, as behind a load
balancer), each with a sender on node b that streams numbered signals to it every ``--interval``
seconds. Once every receiver has heard from its sender, node a is SIGKILLed. Per receiver:

* resumed: kill -> the SDK's ``Resumed`` event from node b (dead socket noticed, connection
  refused by a, backoff, resume taken over from Redis);
* flowing: kill -> the first signal numbered after the last one received before the kill.

Afterwards every receiver must hold 1..N exactly once, in order (else the bench exits 1). Prints
figures, asserts nothing about timing. Everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

import aiohttp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from cluster import Processes, start_node, start_redis  # noqa: E402

from signaling.client import Client, Resumed, SignalReceived  # noqa: E402
from signaling.core.backoff import Backoff  # noqa: E402


class Receiver:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.got: list[int] = []
        self.resumed_at: float | None = None
        self.flowing_at: float | None = None
        self.last_before_kill = 0
        self.first = asyncio.Event()

    async def run(self, killed: asyncio.Event, kill_time: list[float]) -> None:
        async for event in self.client:
            if isinstance(event, Resumed) and killed.is_set() and self.resumed_at is None:
                self.resumed_at = time.monotonic() - kill_time[0]
            elif isinstance(event, SignalReceived):
                if event.data.get("stop"):
                    return
                self.got.append(event.data["n"])
                self.first.set()
                if not killed.is_set():
                    self.last_before_kill = event.data["n"]
                elif self.flowing_at is None and event.data["n"] > self.last_before_kill and self.resumed_at is not None:
                    self.flowing_at = time.monotonic() - kill_time[0]


async def one_run(redis: str, run: int, args: argparse.Namespace, procs: Processes, http: aiohttp.ClientSession) -> list[Receiver]:
    url_a = await start_node(procs, http, f"a{run}", redis)
    url_b = await start_node(procs, http, f"b{run}", redis)
    receivers: list[Receiver] = []
    senders: list[Client] = []
    for i in range(args.clients):
        room = f"r{i}"
        rx = Client([url_a, url_b], room, name="rx", backoff=Backoff(base=0.05, cap=0.5), session=http)
        tx = Client(url_b, room, name="tx", session=http)
        await rx.connect()
        await tx.connect()
        receivers.append(Receiver(rx))
        senders.append(tx)
    killed = asyncio.Event()
    kill_time = [0.0]
    readers = [asyncio.create_task(r.run(killed, kill_time)) for r in receivers]

    async def stream(tx: Client, rx: Receiver) -> None:
        assert rx.client.peer_id is not None
        for n in range(1, args.messages + 1):
            await tx.signal(rx.client.peer_id, {"n": n})
            await asyncio.sleep(args.interval)
        await tx.signal(rx.client.peer_id, {"stop": True})

    streams = [asyncio.create_task(stream(tx, rx)) for tx, rx in zip(senders, receivers, strict=True)]
    async with asyncio.timeout(60):
        await asyncio.gather(*(r.first.wait() for r in receivers))
        await asyncio.sleep(args.interval * 10)  # the streams are flowing
        kill_time[0] = time.monotonic()
        procs.procs[f"node-a{run}"].kill()
        killed.set()
        await asyncio.gather(*streams)
        await asyncio.gather(*readers)
    for client in [r.client for r in receivers] + senders:
        await client.close()
    return receivers


def summary(label: str, values: list[float]) -> str:
    if not values:
        return f"{label:10} (none)"
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return (f"{label:10} min {min(values):.3f} s  median {statistics.median(values):.3f} s  "
            f"p95 {p95:.3f} s  max {max(values):.3f} s  (n={len(values)})")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between a sender's signals")
    parser.add_argument("--redis-server", default="/usr/bin/redis-server")
    args = parser.parse_args()
    resumed: list[float] = []
    flowing: list[float] = []
    bad = 0
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as logdir:
            procs = Processes(logdir)
            try:
                async with aiohttp.ClientSession() as http:
                    redis = await start_redis(procs, args.redis_server)
                    receivers = await one_run(redis, run, args, procs, http)
            finally:
                await procs.close()
        for r in receivers:
            if r.got != list(range(1, args.messages + 1)):
                bad += 1
                print(f"run {run}: a receiver got {len(r.got)} signals, not 1..{args.messages} once in order")
            if r.resumed_at is not None:
                resumed.append(r.resumed_at)
            if r.flowing_at is not None:
                flowing.append(r.flowing_at)
        print(f"run {run}: {len(receivers)} receivers, all resumed: {all(r.resumed_at for r in receivers)}")
    print(f"\nkill -9 of the node holding {args.clients} receivers, {args.runs} runs "
          f"(sender interval {args.interval * 1000:.0f} ms, SDK backoff base 50 ms cap 500 ms):")
    print(summary("resumed", resumed))
    print(summary("flowing", flowing))
    print(f"exactly once and in order: {'yes' if not bad else f'NO ({bad} receivers)'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
