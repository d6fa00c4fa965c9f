"""Rolling upgrade benchmark: restart every node of a loaded cluster, one at a time, and measure
what clients saw.

    python bench/rolling_upgrade.py                 # 1 run, 4 rooms
    python bench/rolling_upgrade.py --runs 3 --rooms 6

Each run is a fresh cluster on loopback: one redis-server (shared by the runs, a key prefix per
run), three ``switchboard serve --redis`` signaling nodes and two ``switchboard sfu`` nodes, all
with an admin token. ``--rooms`` rooms, each with an aiortc publisher and subscriber (Python SDK,
given the three signaling URLs in a rotated order, as behind a load balancer) that send each
other a numbered signal every ``--interval`` seconds the whole time. Once every subscriber
decodes, a quiet window of the same length as a typical step measures the baseline (the largest
gap between two decoded frames with nothing restarted). Then
:class:`signaling.tools.rolling.RollingRestart` — what ``switchboard admin rolling-restart`` runs —
drains each node through its admin API, waits until it is down, starts the same command line
again (the bench is the supervisor) and waits until it is ready: sig-1, sig-2, sig-3, sfu-a,
sfu-b.

Reported: signals lost / duplicated / out of order (must be 0), session rejoins (must be 0),
resumes and media reconnects (``reconnect {scope: media}``), per restarted node the drain ->
down and drain -> ready times and the media gap every subscriber saw while that node was being
restarted (largest gap between two decoded frames overlapping the step; max and median over the
subscribers), for SFU nodes the hand-over (``reconnect {scope: media}`` -> first frame decoded from
the new node, per subscriber of a room that moved), and the total duration. Exit status 1 if anything was lost, duplicated or
rejoined. Asserts nothing about timing; everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sfu import aiortc_hooks  # noqa: E402
from signaling.client import SignalReceived  # noqa: E402
from signaling.core.backoff import Backoff  # noqa: E402
from signaling.tools.rolling import RollingRestart, Target, plan  # noqa: E402
from tests.backend.conftest import _free_port, launch_redis  # noqa: E402
from tests.cluster.media_peers import FailoverParticipant, FailoverPublisher, FailoverSubscriber  # noqa: E402
from tests.cluster.procs import NodeProcess, Processes  # noqa: E402

HOST = "127.0.0.1"
TOKEN = "bench-rolling-token"


@dataclass
class Timings:
    heartbeat: float
    ttl: float
    interval: float
    drain: float

    def args(self, prefix: str) -> list[str]:
        return [
            "--set", f"redis_prefix={prefix}",
            "--set", f"cluster.heartbeat_interval={self.heartbeat}",
            "--set", f"cluster.node_ttl={self.ttl}",
            "--set", f"cluster.failover_interval={self.interval}",
            "--set", f"drain_timeout={self.drain}",
            "--admin-token", TOKEN,
            "--log-level", "warning",
        ]


@dataclass
class Step:
    node: str
    kind: str
    started: float = 0.0
    down: float = 0.0
    ready: float = 0.0
    #: Per subscriber: the largest gap between decoded frames overlapping [started, ready].
    gaps: list[float] = field(default_factory=list)
    #: SFU nodes, per subscriber whose room was handed over: ``reconnect {scope: media}`` ->
    #: first frame decoded from the new node.
    handovers: list[float] = field(default_factory=list)
    #: The drained process was still shutting down ``--stop-timeout`` after it stopped serving.
    lingered: bool = False


@dataclass
class Outcome:
    steps: list[Step]
    baseline: list[float]
    sent: int
    lost: int
    duplicated: int
    reordered: int
    rejoins: int
    resumes: int
    media_reconnects: int
    duration: float


def largest_gap(times: list[float], start: float, end: float) -> float:
    """The largest gap between consecutive frame times that overlaps [start, end]."""
    gap = 0.0
    for a, b in itertools.pairwise(times):
        if b >= start and a <= end:
            gap = max(gap, b - a)
    return gap


async def start_node(procs: Processes, redis_url: str, kind: str, node_id: str, timings: Timings, prefix: str) -> tuple[NodeProcess, str]:
    port = _free_port()
    if kind == "sfu":
        argv = ["sfu", "--redis", redis_url, "--node-id", node_id, "--host", HOST, "--port", str(port),
                "--ice-host", HOST, "--ice-allow-peer", "127.0.0.0/8", "--capacity", "64", *timings.args(prefix)]
    else:
        argv = ["serve", "--redis", redis_url, "--node-id", node_id, "--host", HOST, "--port", str(port),
                "--set", "security.message_rate=100000", "--set", "security.message_burst=100000", *timings.args(prefix)]
    node = await procs.start(node_id, argv, ready_url=f"http://{HOST}:{port}/readyz")
    return node, f"ws://{HOST}:{port}/ws"


async def one_run(run: int, redis_url: str, args: argparse.Namespace, timings: Timings, directory: Path) -> Outcome:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    procs = Processes(directory)
    started: list[FailoverParticipant] = []
    senders: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    failed = True
    try:
        current: dict[str, NodeProcess] = {}
        sfus = await asyncio.gather(*(start_node(procs, redis_url, "sfu", n, timings, prefix) for n in ("sfu-a", "sfu-b")))
        for name, (node, _) in zip(("sfu-a", "sfu-b"), sfus, strict=True):
            current[name] = node
        urls: list[str] = []
        for name in ("sig-1", "sig-2", "sig-3"):
            node, url = await start_node(procs, redis_url, "signaling", name, timings, prefix)
            current[name] = node
            urls.append(url)

        pubs: list[FailoverPublisher] = []
        subs: list[FailoverSubscriber] = []
        for i in range(args.rooms):
            def rotated(k: int) -> list[str]:
                return urls[k % 3:] + urls[: k % 3]

            sub = FailoverSubscriber(rotated(2 * i), f"room-{i}", f"sub-{i}", backoff=Backoff(base=0.05, cap=0.5))
            pub = FailoverPublisher(rotated(2 * i + 1), f"room-{i}", f"pub-{i}", backoff=Backoff(base=0.05, cap=0.5))
            for participant in (sub, pub):
                started.append(participant)
                await participant.start()
            subs.append(sub)
            pubs.append(pub)
        for sub in subs:
            await sub.wait_frames(30)

        sent: dict[str, list[int]] = {p.name: [] for p in started}

        async def stream(sender: FailoverParticipant, to: str) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                await sender.client.signal(to, {"n": n})
                sent[sender.name].append(n)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(args.interval):
                        await stop.wait()

        for pub, sub in zip(pubs, subs, strict=True):
            senders.append(asyncio.create_task(stream(pub, sub.peer_id)))
            senders.append(asyncio.create_task(stream(sub, pub.peer_id)))

        quiet_start = time.monotonic()
        await asyncio.sleep(args.baseline)
        baseline = [largest_gap(s.frame_times(), quiet_start, time.monotonic()) for s in subs]

        steps: dict[str, Step] = {}

        async def restart(target: Target) -> None:
            # As systemctl restart would: wait for the drained process, kill it if it lingers.
            old = current[target.node]
            steps[target.node].down = time.monotonic()
            try:
                await old.wait_exit(patience=args.stop_timeout)
            except TimeoutError:
                steps[target.node].lingered = True
                old.kill()
                await old.wait_exit()
            current[target.node] = await procs.restart(old, patience=300)

        registry_nodes = [{"node": n, "kind": "sfu" if n.startswith("sfu") else "signaling",
                           "address": current[n].ready_url.removesuffix("/readyz")} for n in current]
        began = time.monotonic()
        async with aiohttp.ClientSession() as http:
            runner = RollingRestart(http, TOKEN, restart, node_timeout=300, poll=0.05)
            for target in plan(registry_nodes):
                step = steps[target.node] = Step(target.node, target.kind, started=time.monotonic())
                await runner.one(target)
                step.ready = time.monotonic()
                print(f"run {run}: {target.node}: down {step.down - step.started:.2f} s, ready {step.ready - step.started:.2f} s after the drain")
        duration = time.monotonic() - began
        # Media flows again; then every gap is closed by a later frame.
        for sub in subs:
            await sub.wait_frames(sub.frames() + 30)
        for step in steps.values():
            step.gaps = [largest_gap(s.frame_times(), step.started, step.ready) for s in subs]
            for s in subs:
                for generation, at in enumerate(s.reconnects_at, 1):
                    first = s.first_frame_at(generation)
                    if step.started <= at <= step.ready and first is not None:
                        step.handovers.append(first - at)
        stop.set()
        await asyncio.gather(*senders)
        # Wait for what is in flight, then count.
        received: dict[str, list[int]] = {}
        lost = duplicated = reordered = 0
        for pub, sub in zip(pubs, subs, strict=True):
            for receiver, sender in ((sub, pub), (pub, sub)):
                def got(r: FailoverParticipant = receiver, s: FailoverParticipant = sender) -> list[int]:
                    return [e.data["n"] for e in r.events if isinstance(e, SignalReceived) and e.sender == s.peer_id]

                with contextlib.suppress(AssertionError):
                    await receiver.wait_for(lambda g=got, w=sent[sender.name]: len(g()) >= len(w), timeout=30,
                                            what="the signals in flight")
                received[sender.name] = got()
                want = sent[sender.name]
                lost += len(set(want) - set(received[sender.name]))
                duplicated += len(received[sender.name]) - len(set(received[sender.name]))
                reordered += sum(1 for a, b in itertools.pairwise(received[sender.name]) if b <= a)
        failed = False
        return Outcome(
            steps=list(steps.values()), baseline=baseline, sent=sum(len(v) for v in sent.values()),
            lost=lost, duplicated=duplicated, reordered=reordered,
            rejoins=sum(p.client.rejoins for p in started), resumes=sum(p.client.resumes for p in started),
            media_reconnects=sum(len(p.reconnects_at) for p in started), duration=duration,
        )
    finally:
        stop.set()
        await asyncio.gather(*senders, return_exceptions=True)
        for participant in reversed(started):
            try:
                await participant.close()
            except Exception as exc:
                print(f"closing {participant.name}: {exc!r}", file=sys.stderr)
        await procs.close(show_logs=failed)


def ms(value: float) -> str:
    return f"{value * 1000:6.0f} ms"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--rooms", type=int, default=4, help="rooms (a publisher and a subscriber each)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between a client's numbered signals")
    parser.add_argument("--baseline", type=float, default=5.0, help="quiet seconds measured before the restarts")
    parser.add_argument("--heartbeat", type=float, default=0.5, help="registry heartbeat interval (s)")
    parser.add_argument("--ttl", type=float, default=2.0, help="registry TTL (s)")
    parser.add_argument("--watch", type=float, default=0.25, help="failover watcher interval of signaling nodes (s)")
    parser.add_argument("--drain-timeout", type=float, default=10.0, help="drain timeout of every node (s)")
    parser.add_argument("--stop-timeout", type=float, default=15.0,
                        help="after a drained node stopped serving, how long its process may take to exit before it is killed (s)")
    args = parser.parse_args()
    timings = Timings(args.heartbeat, args.ttl, args.watch, args.drain_timeout)
    aiortc_hooks.set_process_host_addresses((HOST,))
    redis = launch_redis()
    outcomes: list[Outcome] = []
    try:
        with tempfile.TemporaryDirectory(prefix="rolling-upgrade-") as tmp:
            for run in range(1, args.runs + 1):
                outcomes.append(await one_run(run, redis.url, args, timings, Path(tmp) / f"run-{run}"))
    finally:
        redis.stop()
    bad = 0
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    print(f"{args.runs} rolling restart(s) of 3 signaling + 2 SFU nodes, {args.rooms} rooms (publisher + subscriber), "
          f"a numbered signal every {args.interval * 1000:.0f} ms each way; watcher every {timings.interval} s")
    for run, o in enumerate(outcomes, 1):
        bad += o.lost + o.duplicated + o.reordered + o.rejoins
        print(f"\nrun {run}: total {o.duration:.1f} s; signals sent {o.sent}, lost {o.lost}, duplicated {o.duplicated}, "
              f"out of order {o.reordered}; rejoins {o.rejoins}, resumes {o.resumes}, media reconnects {o.media_reconnects}")
        print(f"  baseline (nothing restarted, {args.baseline:.0f} s): largest frame gap max {ms(max(o.baseline))}, "
              f"median {ms(statistics.median(o.baseline))}")
        print(f"  {'node':<7} {'down':>8} {'ready':>8}   frame gap per subscriber: max   median (x baseline max)"
              "   hand-over (reconnect -> first frame): max   median")
        for s in o.steps:
            handover = f"{ms(max(s.handovers))}  {ms(statistics.median(s.handovers))}  (n={len(s.handovers)})" if s.handovers else "-"
            print(f"  {s.node:<7} {s.down - s.started:7.2f}s {s.ready - s.started:7.2f}s   "
                  f"{ms(max(s.gaps))}  {ms(statistics.median(s.gaps))}   {max(s.gaps) / max(max(o.baseline), 1e-3):5.1f}x"
                  f"      {handover}{'  (process lingered: killed)' if s.lingered else ''}")
    print(f"\nexactly once, in order, no rejoin: {'yes' if not bad else 'NO'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
