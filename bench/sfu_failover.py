"""SFU failover benchmark: kill -9 an SFU node, time until its rooms' subscribers decode again.

    python bench/sfu_failover.py                    # 3 runs, registry TTL 2 s (heartbeat 0.5 s)
    python bench/sfu_failover.py --ttl 6 --heartbeat 2 --interval 1   # the production defaults

Each run is a fresh cluster on loopback: one redis-server (shared by the runs, a key prefix per
run), two ``switchboard sfu`` processes, one ``switchboard serve --redis`` process, and ``--rooms``
rooms with an aiortc publisher and subscriber each (Python SDK for signaling). Once every
subscriber decodes, the SFU node holding the first room is SIGKILLed. For each room it held:

* registry: kill -> the node's registry entry is gone (its TTL ran out since its last heartbeat);
* detection: kill -> the clients receive ``reconnect {scope: "media"}`` (registry + watcher);
* media: kill -> the subscriber decodes its first frame from the new SFU node.

Prints figures, asserts nothing about timing. Everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sfu import aiortc_hooks  # noqa: E402
from signaling.cluster.registry import NodeRegistry  # noqa: E402
from tests.backend.conftest import _free_port, launch_redis  # noqa: E402
from tests.cluster.media_peers import FailoverParticipant, FailoverPublisher, FailoverSubscriber  # noqa: E402
from tests.cluster.procs import NodeProcess, Processes  # noqa: E402

HOST = "127.0.0.1"


@dataclass
class Sample:
    run: int
    room: str
    registry: float
    detection: float
    media: float


@dataclass
class Timings:
    heartbeat: float
    ttl: float
    interval: float

    def args(self, prefix: str) -> list[str]:
        return [
            "--set", f"redis_prefix={prefix}",
            "--set", f"cluster.heartbeat_interval={self.heartbeat}",
            "--set", f"cluster.node_ttl={self.ttl}",
            "--set", f"cluster.failover_interval={self.interval}",
            "--log-level", "warning",
        ]


async def start_sfu(procs: Processes, redis_url: str, node_id: str, timings: Timings, prefix: str) -> NodeProcess:
    port = _free_port()
    argv = ["sfu", "--redis", redis_url, "--node-id", node_id, "--host", HOST, "--port", str(port),
            "--ice-host", HOST, "--ice-allow-peer", "127.0.0.0/8", "--capacity", "16", *timings.args(prefix)]
    return await procs.start(node_id, argv, ready_url=f"http://{HOST}:{port}/readyz")


async def start_signaling(procs: Processes, redis_url: str, timings: Timings, prefix: str) -> str:
    port = _free_port()
    argv = ["serve", "--redis", redis_url, "--node-id", "sig-1", "--host", HOST, "--port", str(port), *timings.args(prefix)]
    await procs.start("sig-1", argv, ready_url=f"http://{HOST}:{port}/readyz")
    return f"ws://{HOST}:{port}/ws"


async def gone_from_registry(registry: NodeRegistry, node_id: str, patience: float) -> float:
    """``time.monotonic()`` when ``node_id`` stopped being listed (polled every 10 ms)."""
    async with asyncio.timeout(patience):
        while node_id in {n.id for n in await registry.nodes("sfu")}:
            await asyncio.sleep(0.01)
    return time.monotonic()


async def one_run(run: int, redis_url: str, rooms: int, timings: Timings, directory: Path) -> list[Sample]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    procs = Processes(directory)
    registry = NodeRegistry(redis_url, key_prefix=prefix, heartbeat_interval=timings.heartbeat, ttl=timings.ttl)
    started: list[FailoverParticipant] = []
    failed = True
    try:
        nodes = dict(zip(("sfu-a", "sfu-b"), await asyncio.gather(
            start_sfu(procs, redis_url, "sfu-a", timings, prefix), start_sfu(procs, redis_url, "sfu-b", timings, prefix),
        ), strict=True))
        url = await start_signaling(procs, redis_url, timings, prefix)
        subs: dict[str, FailoverSubscriber] = {}
        for i in range(rooms):
            room = f"room-{i}"
            subs[room] = FailoverSubscriber(url, room, f"sub-{i}")
            publisher = FailoverPublisher(url, room, f"pub-{i}")
            for participant in (subs[room], publisher):
                started.append(participant)
                await participant.start()
        for sub in subs.values():
            await sub.wait_frames(10)
        placement = {room: await registry.placement(room) for room in subs}
        victim = placement["room-0"]
        assert victim is not None
        moved = [room for room, node in placement.items() if node == victim]
        patience = 4 * timings.ttl + 30
        watch = asyncio.ensure_future(gone_from_registry(registry, victim, patience))
        await asyncio.sleep(0)
        nodes[victim].kill()
        killed_at = nodes[victim].stopped_at
        assert killed_at is not None
        for room in moved:
            await subs[room].wait_frames(1, generation=1)
        expired_at = await watch
        samples = [
            Sample(
                run, room, expired_at - killed_at, subs[room].reconnects_at[0] - killed_at,
                (subs[room].first_frame_at(1) or 0.0) - killed_at,
            )
            for room in moved
        ]
        failed = False
        return samples
    finally:
        for participant in reversed(started):
            try:
                await participant.close()
            except Exception as exc:
                print(f"closing {participant.name}: {exc!r}", file=sys.stderr)
        await registry.close(deregister=False)
        await procs.close(show_logs=failed)


def summary(label: str, values: list[float]) -> str:
    return f"{label:<48} min {min(values):5.2f} s   median {statistics.median(values):5.2f} s   max {max(values):5.2f} s"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rooms", type=int, default=4, help="rooms (a publisher and a subscriber each), spread over 2 SFU nodes")
    parser.add_argument("--heartbeat", type=float, default=0.5, help="registry heartbeat interval (s)")
    parser.add_argument("--ttl", type=float, default=2.0, help="registry TTL: a node is dead this long after its last heartbeat (s)")
    parser.add_argument("--interval", type=float, default=0.25, help="failover watcher interval of signaling nodes (s)")
    args = parser.parse_args()
    timings = Timings(args.heartbeat, args.ttl, args.interval)
    aiortc_hooks.set_process_host_addresses((HOST,))
    redis = launch_redis()
    samples: list[Sample] = []
    try:
        with tempfile.TemporaryDirectory(prefix="sfu-failover-") as tmp:
            for run in range(1, args.runs + 1):
                got = await one_run(run, redis.url, args.rooms, timings, Path(tmp) / f"run-{run}")
                for s in got:
                    print(f"run {s.run} {s.room}: registry {s.registry:.2f} s, reconnect {s.detection:.2f} s, "
                          f"first decoded frame {s.media:.2f} s after kill -9")
                samples.extend(got)
    finally:
        redis.stop()
    print(f"\n{args.runs} failovers, {len(samples)} rooms moved; heartbeat {timings.heartbeat} s, TTL {timings.ttl} s, "
          f"watcher every {timings.interval} s")
    print(summary("kill -> entry gone from the registry", [s.registry for s in samples]))
    print(summary("kill -> clients told reconnect {scope: media}", [s.detection for s in samples]))
    print(summary("kill -> first decoded frame", [s.media for s in samples]))
    print(summary("reconnect -> first decoded frame (media part)", [s.media - s.detection for s in samples]))


if __name__ == "__main__":
    asyncio.run(main())
