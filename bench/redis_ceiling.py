"""The ceiling of one Redis primary: the nodes' own Lua scripts driven from several processes.

Starts a private redis-server (and, for the durability rows, a replica of it) on 127.0.0.1 and
drives, from ``--workers`` processes with ``--concurrency`` calls in flight each, the scripts a
signaling node runs, imported from the code (not copied):

- ``join``:   ``_ADD`` (a member joins a room of ``--room-size``; a new room every so often);
- ``relay``:  ``_SEND`` with the sender's cseq (a client's ``signal`` appended to the receiver's
              node inbox, ``rcseq`` advanced);
- ``ledger``: ``_PUT`` with one stamped frame (the receiver's session ledger write);
- ``ack``:    ``_PUT`` with no frame and a higher ``acked`` (``XTRIM MINID`` of the mailbox);
- ``signal``: what one relayed ``signal`` costs the cluster end to end: ``_SEND`` + the receiving
              node's ``XREAD`` of its inbox + ``_PUT`` of the frame + one ``ack`` per 16 frames
              (as the SDKs acknowledge), each worker acting as one node.

For each it reports operations/s, the Redis main thread's CPU over the run (``INFO cpu``) and
the CPU each operation costs. On a shared box the clients may saturate before Redis does, so the
ceiling is computed from the CPU per operation: ``1 / (CPU s per op)`` is what one fully busy
Redis core would carry. Then: "one primary carries N sessions at M signals/s each".

Durability rows (``--no-replica`` skips them): the ledger write alone vs followed by
``WAIT 1`` + ``ROLE`` on the same connection (what ``cluster.ledger_wait_replicas=1`` does),
one call at a time (latency) and saturated (throughput), with the replica on the same box.

Memory rows: ``used_memory`` before and after creating members (rooms of 2 and of 10) and
session ledgers (with 0 and with 32 unacknowledged frames of 500 bytes), per member / session.

    python bench/redis_ceiling.py                 # ~1 min on 2 cores
    python bench/redis_ceiling.py --seconds 3 --workers 2 --concurrency 8

Loopback only; bounded in time; every process it starts is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.asyncio import Redis

from signaling.cluster.ledger import _PUT
from signaling.cluster.redis_backend import _ADD, _SEND

HOST = "127.0.0.1"
ACK_EVERY = 16
FRAME = json.dumps({"type": "signal", "from": "p_abcdefghijklmnop", "data": {"sdp": "x" * 400}, "seq": 1})
META = json.dumps({"peer": "p", "room": "r", "name": "bench", "grants": [], "identity": "", "subscribe": True})
TTL_MS = 600_000
#: Time the worker processes get to start and set up before the measured window.
STARTUP_S = 4.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Server:
    def __init__(self, exe: str, directory: Path, name: str, replica_of: int | None = None) -> None:
        self.port = free_port()
        args = [exe, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--dir", str(directory), "--maxmemory-policy", "noeviction",
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        if replica_of is not None:
            args += ["--replicaof", HOST, str(replica_of)]
        self.log = (directory / f"{name}.log").open("wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


async def wait_ready(port: int, replica: bool = False) -> None:
    client = Redis(host=HOST, port=port, decode_responses=True)
    try:
        for _ in range(500):
            try:
                info = await client.info("replication")
                if not replica or info.get("master_link_status") == "up":
                    return
            except OSError:
                pass
            await asyncio.sleep(0.02)
        raise RuntimeError(f"redis on {port} not ready")
    finally:
        await client.aclose()


# -- one worker process -----------------------------------------------------------------------


async def _worker(port: int, op: str, index: int, workers: int, start_at: float, seconds: float, concurrency: int,
                  room_size: int, wait: bool, prefix: str) -> tuple[int, list[float], float]:
    redis = Redis(host=HOST, port=port, decode_responses=True, max_connections=concurrency + 2)
    add, send, put = redis.register_script(_ADD), redis.register_script(_SEND), redis.register_script(_PUT)
    node = f"n{index}"
    receiver_node = f"n{(index + 1) % workers}"
    p = prefix
    sessions = [f"{node}-s{c}" for c in range(concurrency)]
    # Each coroutine c: one sending session on this node, one receiving peer on the next node.
    for c, sid in enumerate(sessions):
        await put(keys=[f"{p}sess:{sid}", f"{p}mbox:{sid}"], args=[node, META, "tok", 0, "", TTL_MS, 1024, 0])
        member = json.dumps({"peer_id": f"{receiver_node}-p{c}", "name": "r", "room": f"{receiver_node}-room{c}",
                             "node_id": receiver_node})
        await redis.hset(f"{p}peers", f"{receiver_node}-p{c}", member)
    seq = dict.fromkeys(sessions, 0)
    latencies: list[float] = []
    count = 0
    # Every worker starts at the same wall-clock instant, after its set-up: the parent samples
    # Redis CPU exactly over the measured window.
    await asyncio.sleep(max(0.0, start_at - time.time()))
    late = time.time() - start_at
    stop_at = time.monotonic() + seconds
    joined = 0

    async def ledger_write(sid: str, frames: bool, acked: int) -> None:
        args: list[Any] = [node, META, "tok", seq[sid], "", TTL_MS, 1024, acked]
        if frames:
            args += [seq[sid], FRAME]
        keys = [f"{p}sess:{sid}", f"{p}mbox:{sid}"]
        if wait:
            async with redis.pipeline(transaction=False) as pipe:
                await put(keys=keys, args=args, client=pipe)
                pipe.execute_command("WAIT", 1, 500)
                pipe.execute_command("ROLE")
                replies = await pipe.execute()
            if int(replies[1]) < 1:
                raise RuntimeError("WAIT timed out")
        else:
            await put(keys=keys, args=args)

    async def relay(c: int, sid: str) -> None:
        await send(keys=[f"{p}peers", f"{p}sess:{sid}"],
                   args=[f"{receiver_node}-p{c}", FRAME, node, f"{p}inbox:", 10_000, 300_000, seq[sid], ""])

    async def loop(c: int) -> None:
        nonlocal count, joined
        sid = sessions[c]
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            seq[sid] += 1
            if op == "join":
                joined += 1
                room = f"{node}-j{joined // room_size}"
                member = json.dumps({"peer_id": f"{node}-j{joined}", "name": "x", "room": room, "node_id": node})
                await add(keys=[f"{p}room:{room}", f"{p}peers", f"{p}rooms", f"{p}joinseq"],
                          args=[f"{node}-j{joined}", member, -1, room, f"{p}node-peers:", f"{p}member-nodes"])
            elif op == "relay":
                await relay(c, sid)
            elif op == "ledger":
                await ledger_write(sid, True, max(0, seq[sid] - 64))
            elif op == "ack":
                await ledger_write(sid, False, seq[sid])
            elif op == "signal":
                await relay(c, sid)
                await ledger_write(sid, True, seq[sid] - ACK_EVERY if seq[sid] % ACK_EVERY == 0 else 0)
            latencies.append(time.perf_counter() - t0)
            count += 1

    async def reader() -> None:
        last = "$"
        while time.monotonic() < stop_at:
            reply = await redis.xread({f"{p}inbox:{node}": last}, count=256, block=100)
            for _stream, entries in reply or []:
                last = entries[-1][0]

    tasks: list[Coroutine[Any, Any, None]] = [loop(c) for c in range(concurrency)]
    if op == "signal":
        tasks.append(reader())
    await asyncio.gather(*tasks)
    await redis.aclose()
    return count, latencies[:: max(1, len(latencies) // 5000)], late


def worker_main(args: tuple[Any, ...]) -> tuple[int, list[float], float]:
    return asyncio.run(_worker(*args))


async def command_usec(port: int, reset: bool = False) -> float:
    """Microseconds Redis spent executing commands since the last reset (``INFO commandstats``):
    the scripts' own cost, without the network and event-loop work around them."""
    client = Redis(host=HOST, port=port, decode_responses=True)
    if reset:
        await client.config_resetstat()
        await client.aclose()
        return 0.0
    stats = await client.info("commandstats")
    await client.aclose()
    return float(sum(v["usec"] for v in stats.values() if isinstance(v, dict)))


async def cpu(port: int) -> float:
    client = Redis(host=HOST, port=port, decode_responses=True)
    info = await client.info("cpu")
    await client.aclose()
    return float(info.get("used_cpu_user_main_thread", info["used_cpu_user"])) + float(
        info.get("used_cpu_sys_main_thread", info["used_cpu_sys"]))


def run_op(port: int, op: str, workers: int, seconds: float, concurrency: int, room_size: int, wait: bool = False,
           startup: float = STARTUP_S) -> dict[str, float]:
    prefix = f"rc{time.monotonic_ns()}:"
    start_at = time.time() + startup
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pending = pool.map_async(
            worker_main, [(port, op, i, workers, start_at, seconds, concurrency, room_size, wait, prefix) for i in range(workers)]
        )
        time.sleep(max(0.0, start_at - time.time()))
        before = asyncio.run(cpu(port))
        asyncio.run(command_usec(port, reset=True))
        time.sleep(seconds)
        used = asyncio.run(cpu(port)) - before
        executing = asyncio.run(command_usec(port))
        results = pending.get(timeout=startup + seconds + 60)
    ops = sum(r[0] for r in results)
    lat = [x for r in results for x in r[1]]
    # A worker that started its window late (set-up slower than STARTUP_S on a loaded box) ran
    # partly outside the CPU sample: that row's per-op figures are wrong, say so.
    late = max(r[2] for r in results)
    return {"ops": ops, "rate": ops / seconds, "cpu": used / seconds, "cpu_us": 1e6 * used / max(1, ops),
            "exec_us": executing / max(1, ops),
            "p50": 1000 * pct(lat, 0.5), "p99": 1000 * pct(lat, 0.99), "late": late}


# -- memory -----------------------------------------------------------------------------------


async def memory_rows(port: int) -> list[tuple[str, float]]:
    redis = Redis(host=HOST, port=port, decode_responses=True)
    add, put = redis.register_script(_ADD), redis.register_script(_PUT)
    rows = []

    async def used() -> int:
        return int((await redis.info("memory"))["used_memory"])

    for size in (2, 10):
        p = f"mem{size}:"
        base = await used()
        n = 2000
        for i in range(n):
            room = f"room{i // size}"
            member = json.dumps({"peer_id": f"p{i:06d}abcdefghij", "name": "participant", "room": room, "node_id": "node-1"})
            await add(keys=[f"{p}room:{room}", f"{p}peers", f"{p}rooms", f"{p}joinseq"],
                      args=[f"p{i:06d}abcdefghij", member, -1, room, f"{p}node-peers:", f"{p}member-nodes"])
        rows.append((f"membership per member, rooms of {size}", (await used() - base) / n))
    for unacked in (0, 32):
        p = f"sess{unacked}:"
        base = await used()
        n = 1000
        for i in range(n):
            sid = f"s_{i:06d}abcdefghij"
            args: list[Any] = ["node-1", META, "a" * 64, 0, "1700000000000-0", TTL_MS, 1024, 0]
            for s in range(1, unacked + 1):
                args += [s, FRAME[:500].ljust(500)]
            await put(keys=[f"{p}sess:{sid}", f"{p}mbox:{sid}"], args=args)
        rows.append((f"session ledger per session, {unacked} unacked frames of 500 B", (await used() - base) / n))
    await redis.aclose()
    return rows


def late_mark(row: dict[str, float], seconds: float) -> str:
    return f"  (!) a worker started {row['late']:.1f} s late: CPU/op unreliable" if row["late"] > 0.1 * seconds else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--room-size", type=int, default=4)
    parser.add_argument("--ops", default="join,relay,ledger,ack,signal")
    parser.add_argument("--no-replica", action="store_true")
    parser.add_argument("--startup", type=float, default=STARTUP_S, help="seconds the workers get to set up [4]")
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "/usr/bin/redis-server")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="redis-ceiling-"))
    primary = Server(args.redis_server, directory, "primary")
    servers = [primary]
    try:
        asyncio.run(wait_ready(primary.port))
        print(f"redis-server {primary.port}; {args.workers} worker processes x {args.concurrency} calls in flight; "
              f"{args.seconds:.0f} s per row; {os.cpu_count()} cores (shared)\n")
        print(f"{'operation':<10} {'ops/s':>9} {'redis CPU':>10} {'CPU/op':>9} {'exec/op':>9} {'1 core ceiling':>15} "
              f"{'p50 ms':>7} {'p99 ms':>7}")
        results: dict[str, dict[str, float]] = {}
        for op in args.ops.split(","):
            r = run_op(primary.port, op, args.workers, args.seconds, args.concurrency, args.room_size, startup=args.startup)
            results[op] = r
            print(f"{op:<10} {r['rate']:>9.0f} {100 * r['cpu']:>9.0f}% {r['cpu_us']:>7.1f}us {r['exec_us']:>7.1f}us "
                  f"{1e6 / r['cpu_us']:>13.0f}/s "
                  f"{r['p50']:>7.2f} {r['p99']:>7.2f}{late_mark(r, args.seconds)}")
        if "signal" in results:
            ceiling = 1e6 / results["signal"]["cpu_us"]
            bound = 1e6 / max(1e-9, results["signal"]["exec_us"])
            print(f"\none primary core carries about {ceiling:,.0f} relayed signals/s (relay + inbox read + ledger write + ack/16;"
                  f" {bound:,.0f}/s counting script execution alone, the bound on an idle box):")
            for rate in (0.5, 2.0, 10.0):
                print(f"  {rate:>4} signals/s per session -> {ceiling / rate:>9,.0f} concurrent sessions (at 100 % of the core)")
            print("  keep Redis below ~50 % CPU for headroom (failover resyncs, bursts): half of these.")
        if not args.no_replica:
            replica = Server(args.redis_server, directory, "replica", replica_of=primary.port)
            servers.append(replica)
            asyncio.run(wait_ready(replica.port, replica=True))
            print("\nDurable before confirmed: ledger write alone vs + WAIT 1 + ROLE (replica on the same box)")
            print(f"{'mode':<26} {'ops/s':>9} {'CPU/op':>9} {'exec/op':>9} {'p50 ms':>7} {'p99 ms':>7}")
            rows = {}
            for label, workers, conc, wait in (("1 call at a time", 1, 1, False), ("1 call at a time + WAIT", 1, 1, True),
                                               ("saturated", args.workers, args.concurrency, False),
                                               ("saturated + WAIT", args.workers, args.concurrency, True)):
                r = run_op(primary.port, "ledger", workers, args.seconds, conc, args.room_size, wait=wait, startup=args.startup)
                rows[label] = r
                print(f"{label:<26} {r['rate']:>9.0f} {r['cpu_us']:>7.1f}us {r['exec_us']:>7.1f}us {r['p50']:>7.2f} "
                      f"{r['p99']:>7.2f}{late_mark(r, args.seconds)}")
            print(f"  WAIT costs x{rows['1 call at a time + WAIT']['p50'] / rows['1 call at a time']['p50']:.2f} latency "
                  f"one at a time, x{rows['saturated']['rate'] / rows['saturated + WAIT']['rate']:.2f} throughput saturated")
        print("\nMemory (used_memory delta)")
        for label, value in asyncio.run(memory_rows(primary.port)):
            print(f"  {label:<58} {value:>8.0f} B")
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
