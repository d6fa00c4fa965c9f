"""SFU workers benchmark: the same rooms on one SFU worker process, then on two.

    python bench/sfu_workers.py            # about a minute, loopback only, stops by itself

The media side of ``switchboard serve --sfu-workers N`` runs here as the serve process runs it:
a :class:`signaling.server.sfu_workers.WorkerPool` of N worker processes and the
:class:`signaling.cluster.remote_media.RemoteMedia` port over it (placement by the cluster's policy,
the SFU RPC messages over Unix sockets). Other processes, spawned here:

* one publisher process with one aiortc publisher per room (generated 320x240@30 VP8);
* one subscriber process with the rooms' *light* subscribers (``bench/sfu.py``'s
  ``HeaderCounter``: ICE, DTLS and SRTP, then the RTP header only).

For N = 1 and N = 2, the same load (``--rooms`` rooms of ``--subscribers`` subscribers) runs for
``--window`` seconds and each worker's CPU (``/proc/<pid>/stat``) is read. A worker is one
process, so one core is its ceiling: the subscribers the pool can carry scale with the inverse of
its busiest worker's CPU, and the printed capacity ratio is ``busiest worker's CPU with one
worker / busiest worker's CPU with two``. On a machine with at least N + 1 free cores that is
the subscribers carried at saturation; this 2-core machine cannot saturate two workers and run
the load generator too, hence the CPU-based ratio. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
import traceback
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "sfu"))

from bench.sfu import (  # noqa: E402 - after the path setup, as bench/sfu.py does
    LOOPBACK,
    Channel,
    Child,
    Conn,
    child_main,
    load_average,
    serve,
)

#: Subscribers per room joined at a time.
BATCH = 10


def workers_child_main(role: str, conn: Conn, *args: Any) -> None:
    from sfu import aiortc_hooks

    aiortc_hooks.set_process_host_addresses(LOOPBACK)
    if role == "pubs":
        asyncio.run(run_publishers(conn, *args))
    else:
        child_main(role, conn, *args)


async def run_publishers(conn: Conn) -> None:
    """Any number of publishers (one per room), each its own aiortc peer connection."""
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from sfu_testpeers import PatternVideoTrack, client_configuration, force_codec

    channel = Channel(conn)
    pcs: dict[str, RTCPeerConnection] = {}
    tracks: dict[str, Any] = {}

    async def offer(peer: str) -> str:
        pc = pcs[peer] = RTCPeerConnection(client_configuration())
        track = tracks[peer] = PatternVideoTrack(320, 240)
        force_codec(pc.addTransceiver(track, "sendonly"), "video", "VP8")
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)

    async def answer(peer: str, sdp: str) -> None:
        await pcs[peer].setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def frames() -> dict[str, int]:
        return {peer: len(track.sent_at) for peer, track in tracks.items()}

    await serve(channel, {"offer": offer, "answer": answer, "frames": frames})
    for pc in pcs.values():
        await pc.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(ctx: Any, workers: int, rooms: int, subscribers: int, window: float) -> dict[str, Any]:
    from signaling.cluster.remote_media import RemoteMedia
    from signaling.core.config import ClusterConfig, IceConfig, ServerConfig
    from signaling.core.sfu_rpc import VIA
    from signaling.server.sfu_workers import WorkerPool

    config = ServerConfig(
        node_id="bench", sfu_workers=workers,
        ice=IceConfig(host_addresses=LOOPBACK, allow_peers=("127.0.0.0/8",)),
        cluster=ClusterConfig(sfu_capacity=100),
    )
    tasks: set[asyncio.Task[None]] = set()
    pubs = Child(ctx, "pubs", main=workers_child_main)
    subs = Child(ctx, "subs", False, True, main=workers_child_main)
    room_of: dict[str, str] = {}
    answers: set[asyncio.Task[None]] = set()
    remote: RemoteMedia | None = None

    async def answer_offer(peer: str, message: dict[str, Any]) -> None:
        try:
            sdp = await subs.call("deliver", peer, message)
            if sdp is not None and remote is not None:
                await remote.subscriber_answer(room_of[peer], peer, sdp)
        except Exception as exc:  # reported, the run goes on (a step may then not be reached)
            print(f"  {peer}: offer/answer failed: {exc}", flush=True)

    async def deliver(peer: str, message: dict[str, Any]) -> None:
        message = {k: v for k, v in message.items() if k != VIA}
        if message.get("type") == "subscriber-offer":
            task = asyncio.get_running_loop().create_task(answer_offer(peer, message))
            answers.add(task)
            task.add_done_callback(answers.discard)

    pool = WorkerPool(config, workers=workers, deliver=deliver)
    remote = RemoteMedia(None, registry=pool.registry, transport=pool, node_id="bench", emit=lambda p, m: None)
    try:
        for child in (pubs, subs):
            child.attach(tasks)
        await pool.start()
        await remote.start()
        names = [f"room-{r}" for r in range(rooms)]
        for room in names:
            peer = f"pub-{room}"
            room_of[peer] = room
            await remote.join(room, peer, subscribe=False)
            sdp = await remote.publish(room, peer, await pubs.call("offer", peer))
            await pubs.call("answer", peer, sdp)
        everyone: list[str] = []
        for first in range(0, subscribers, BATCH):
            # In batches, each receiving before the next joins: a loaded load generator answers
            # a few offers at a time, not a hundred.
            batch = []
            for room in names:
                for i in range(first, min(first + BATCH, subscribers)):
                    peer = f"sub-{room}-{i}"
                    room_of[peer] = room
                    batch.append(peer)
                    await remote.join(room, peer)
            everyone += batch
            async with asyncio.timeout(60 + 2 * len(batch)):
                while True:
                    snap = await subs.call("snapshot")
                    if all(snap.get(p, (0, 0, 0))[0] > 10 for p in batch):
                        break
                    await asyncio.sleep(0.5)
        placement = {room: await pool.registry.placement(room) for room in names}
        pids = {node: pool.pid_of(node) for node in pool.worker_ids()}
        cpu0 = {node: cpu_seconds(pid) for node, pid in pids.items() if pid}
        snap0, pub0 = await subs.call("snapshot"), await pubs.call("frames")
        wall0 = time.monotonic()
        await asyncio.sleep(window)  # the measurement window
        wall = time.monotonic() - wall0
        cpu1 = {node: cpu_seconds(pid) for node, pid in pids.items() if pid}
        snap1, pub1 = await subs.call("snapshot"), await pubs.call("frames")
        cpu = {node: 100 * (cpu1[node] - cpu0[node]) / wall for node in cpu0}
        fps = [(snap1[p][0] - snap0[p][0]) / wall for p in everyone]
        return {
            "workers": workers,
            "placement": placement,
            "cpu": cpu,
            "busiest": max(cpu.values()),
            "total": sum(cpu.values()),
            "sub_fps_mean": statistics.mean(fps),
            "sub_fps_min": min(fps),
            "pub_fps": statistics.mean((pub1[p] - pub0[p]) / wall for p in pub1),
            "load": load_average(),
        }
    finally:
        for task in answers:
            task.cancel()
        await remote.close()
        await pool.shutdown()
        for child in (pubs, subs):
            child.stop()
        for task in tasks:
            task.cancel()


async def main(args: argparse.Namespace) -> None:
    ctx = multiprocessing.get_context("spawn")
    print(
        f"SFU workers: {args.rooms} rooms x (1 publisher 320x240@30 VP8 + {args.subscribers} light "
        f"subscribers), loopback, {os.cpu_count()} CPUs"
    )
    rows = []
    async with asyncio.timeout(args.deadline):
        for workers in (1, 2):
            row = await run(ctx, workers, args.rooms, args.subscribers, args.window)
            rows.append(row)
            per = ", ".join(f"{node} {value:.1f} %" for node, value in sorted(row["cpu"].items()))
            print(
                f"  {workers} worker(s), load {row['load']}: rooms on {sorted(set(row['placement'].values()))}; "
                f"worker CPU {per} (total {row['total']:.1f} %); pub {row['pub_fps']:.1f} fps, "
                f"sub {row['sub_fps_mean']:.1f} fps (min {row['sub_fps_min']:.1f})",
                flush=True,
            )
    one, two = rows
    print(
        f"capacity ratio (busiest worker CPU, 1 worker / 2 workers): {one['busiest'] / two['busiest']:.2f}x; "
        f"total worker CPU 2 workers / 1 worker: {two['total'] / one['total']:.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=2)
    parser.add_argument("--subscribers", type=int, default=30, help="per room")
    parser.add_argument("--window", type=float, default=8.0, help="seconds measured per run")
    parser.add_argument("--deadline", type=float, default=400.0, help="seconds before giving up")
    try:
        asyncio.run(main(parser.parse_args()))
    except TimeoutError:
        traceback.print_exc()
        sys.exit("benchmark exceeded its deadline")
