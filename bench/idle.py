"""Idle sessions: heartbeat CPU per 10,000 sessions, RSS per session, cost per ping.

    python bench/idle.py [--sessions 5000 --interval 10 --window 20 --clients 2]

A ``switchboard serve`` in its own process (embedded, no SFU) and ``--clients`` load-generator
processes, each holding its share of raw WebSocket sessions (joined, not subscribed, answering
every ping with a pong). Measured over ``--window`` seconds once all are joined: the server's CPU
(``/proc``) while nothing but heartbeats flows, scaled to 10,000 sessions, and divided by the
pings sent in the window (``sessions x window / interval``) for the cost of one ping + pong
round on the server; RSS growth per session. The baseline in the same run is the server's CPU
over a window of the same length before any session joined (its own timers).

File descriptors: each session is one socket on both sides. The bench raises its own
``RLIMIT_NOFILE`` soft limit to the hard limit and starts the server and clients with it; an
operator needs ``ulimit -n`` of at least sessions + 1,000 for the server (systemd:
``LimitNOFILE=``). Stops by itself; prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import socket
import sys
import time
from typing import Any

import aiohttp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (at most the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and wanted > hard:
        try:  # raising the hard limit needs CAP_SYS_RESOURCE (root)
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    target = min(max(soft, wanted), hard) if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def server_counts(port: int) -> tuple[float, float]:
    """Pings the server sent and pongs it received so far (its ``/metrics``)."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    counts = {"ping": 0.0, "pong": 0.0}
    for line in text.splitlines():
        for kind, name in (("ping", 'switchboard_messages_out_total{type="ping"}'),
                           ("pong", 'switchboard_messages_in_total{type="pong"}')):
            if line.startswith(name):
                counts[kind] = float(line.rsplit(" ", 1)[1])
    return counts["ping"], counts["pong"]


def top_frames(raw: str, n: int = 20) -> list[tuple[float, str]]:
    """The ``n`` functions with the most self time in a py-spy raw (collapsed stacks) file."""
    counts: dict[str, int] = {}
    total = 0
    with open(raw) as f:
        for line in f:
            stack, _, number = line.rstrip().rpartition(" ")
            leaf = stack.rsplit(";", 1)[-1]
            leaf = leaf.split(" (")[0] + " (" + leaf.rsplit("/", 1)[-1] if "/" in leaf else leaf
            counts[leaf] = counts.get(leaf, 0) + int(number)
            total += int(number)
    return [(c / total, f) for f, c in sorted(counts.items(), key=lambda kv: -kv[1])[:n]] if total else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def client_main(port: int, first: int, count: int, conn: Any, sources: list[str], concurrency: int) -> None:
    raise_fd_limit(count + 1000)
    asyncio.run(hold(port, first, count, conn, sources, concurrency))


async def hold(port: int, first: int, count: int, conn: Any, sources: list[str], concurrency: int) -> None:
    """Join ``count`` sessions (``concurrency`` joins at a time, spread over the loopback
    ``sources`` addresses so that no source runs out of ephemeral ports), answer pings, report
    pings seen until told to stop."""
    pings = 0

    async def keep(ws: aiohttp.ClientWebSocketResponse) -> None:
        nonlocal pings
        async for msg in ws:
            data = json.loads(msg.data)
            if data.get("type") == "ping":
                pings += 1
                await ws.send_str(json.dumps({"type": "pong", "t": data["t"]}))

    sockets = []
    holders: set[asyncio.Task[None]] = set()
    https = [
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, local_addr=(source, 0)))
        for source in sources
    ]
    gate = asyncio.Semaphore(concurrency)

    async def join(i: int) -> None:
        async with gate:
            ws = await https[i % len(https)].ws_connect(f"ws://127.0.0.1:{port}/ws", autoping=True)
            await ws.send_str(json.dumps({"type": "join", "room": f"idle{i % 500}", "subscribe": False}))
            await ws.receive()  # welcome
        sockets.append(ws)
        task = asyncio.get_running_loop().create_task(keep(ws))
        holders.add(task)
        task.add_done_callback(holders.discard)

    try:
        await asyncio.gather(*(join(i) for i in range(first, first + count)))
        conn.send(("joined", count))
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_reader(conn.fileno(), stop.set)
        while True:
            await stop.wait()
            stop.clear()
            if not conn.poll():
                continue  # a reader callback queued before the last recv(): nothing to read
            message = conn.recv()
            if message == "pings":
                conn.send(("pings", pings))
            else:
                break
        loop.remove_reader(conn.fileno())
        for task in list(holders):
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
        for ws in sockets:
            await ws.close()
    finally:
        for http in https:
            await http.close()
    conn.send(("done", 0))


async def main(args: argparse.Namespace) -> None:
    limit = raise_fd_limit(args.sessions + 1000)
    print(
        f"idle sessions: {args.sessions} over {args.clients} client process(es), pings every "
        f"{args.interval} s, window {args.window} s; RLIMIT_NOFILE {limit}; {os.cpu_count()} "
        f"CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    # An ephemeral port range holds ~28,000 connections per (source, destination) pair.
    sources = [f"127.0.0.{2 + i}" for i in range(args.sources or max(1, -(-args.sessions // 20_000)))]
    if limit < args.sessions + 100:
        sys.exit(f"RLIMIT_NOFILE hard limit {limit} is below {args.sessions} sessions: ulimit -Hn")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": ROOT}
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signaling", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--no-sfu", "--log-level", "error", "--heartbeat-interval", str(args.interval),
        "--heartbeat-timeout", str(args.interval * 3),
        # Every session comes from 127.0.0.1: lift the per-address accept limits.
        "--set", "security.connection_rate_per_ip=1e9", "--set", "security.connection_burst_per_ip=1e9",
        "--set", f"security.max_connections_per_ip={args.sessions + 1000}",
        stdout=asyncio.subprocess.PIPE, env=env,
        cwd=ROOT,
    )
    ctx = multiprocessing.get_context("spawn")
    children = []
    drainer: asyncio.Task[None] | None = None
    try:
        assert server.stdout is not None
        await server.stdout.readline()
        stdout = server.stdout

        async def drain() -> None:  # a full pipe would block the server
            while await stdout.read(65536):
                pass

        drainer = asyncio.get_running_loop().create_task(drain())  # owned: cancelled below
        base_rss = rss_of(server.pid)
        cpu0 = cpu_of(server.pid)
        await asyncio.sleep(args.window)  # the baseline window: no session
        base_cpu = (cpu_of(server.pid) - cpu0) / args.window
        share = args.sessions // args.clients
        t0 = time.perf_counter()
        for c in range(args.clients):
            count = share if c < args.clients - 1 else args.sessions - share * (args.clients - 1)
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=client_main, args=(port, c * share, count, child, sources, args.join_concurrency), daemon=True
            )
            proc.start()
            children.append((proc, parent))
        for proc, parent in children:
            while not await asyncio.get_running_loop().run_in_executor(None, parent.poll, 1.0):
                if not proc.is_alive():
                    sys.exit(f"client process exited with {proc.exitcode} while joining")
            parent.recv()  # ("joined", count)
        join_s = time.perf_counter() - t0
        rss = rss_of(server.pid)

        def pings() -> int:
            total = 0
            for _, parent in children:
                parent.send("pings")
                total += parent.recv()[1]
            return total

        # Let the join-time probes and first pings settle into the steady schedule.
        await asyncio.sleep(min(args.interval, 5.0))
        profiler = None
        if args.profile:
            profiler = await asyncio.create_subprocess_exec(
                os.path.join(os.path.dirname(sys.executable), "py-spy"), "record", "--pid", str(server.pid),
                "--duration", str(int(args.window)), "--rate", "200", "--format", "raw", "--output", args.profile,
                "--nonblocking", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )
        p0, (s0, q0), c0, w0 = pings(), await server_counts(port), cpu_of(server.pid), time.perf_counter()
        await asyncio.sleep(args.window)
        c1, w1, p1, (s1, q1) = cpu_of(server.pid), time.perf_counter(), pings(), await server_counts(port)
        wall = w1 - w0
        cpu = (c1 - c0) / wall
        # Per round, counted by the server (pongs it received); the clients' count for comparison.
        seen = q1 - q0
        per_ping_us = (c1 - c0 - base_cpu * wall) * 1e6 / seen if seen else float("nan")
        per_10k = (cpu - base_cpu) * 10_000 / args.sessions
        expected = args.sessions / args.interval
        print(f"  joined in {join_s:.1f} s ({args.join_concurrency} at a time per client, sources {', '.join(sources)})")
        print(f"  server sent {(s1 - s0) / wall:.0f} pings/s, received {seen / wall:.0f} pongs/s "
              f"(clients saw {(p1 - p0) / wall:.0f} pings/s; schedule: {expected:.0f}/s)")
        print(f"  server RSS +{(rss - base_rss) / 1e6:.0f} MB = {(rss - base_rss) / args.sessions / 1024:.1f} KiB/session")
        print(f"  server CPU idle, no session (baseline): {base_cpu * 100:.2f} % of a core")
        print(f"  server CPU with {args.sessions} idle sessions: {cpu * 100:.2f} % of a core "
              f"(load average {os.getloadavg()[0]:.1f})")
        print(f"  heartbeat CPU per 10,000 sessions: {per_10k * 100:.1f} % of a core "
              f"(pings every {args.interval} s); per ping + pong: {per_ping_us:.0f} us")
        if profiler is not None:
            await profiler.wait()
            print(f"  py-spy samples of the server over the window (self time): {args.profile}")
            for share_, frame in top_frames(args.profile):
                print(f"    {share_ * 100:5.1f} %  {frame}")
    finally:
        for _, parent in children:
            with contextlib.suppress(OSError):
                parent.send("stop")
        for proc, _ in children:
            proc.join(30)
            if proc.is_alive():
                proc.terminate()
        server.terminate()
        await server.wait()
        if drainer is not None:
            drainer.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--interval", type=float, default=10.0, help="heartbeat interval (s)")
    parser.add_argument("--window", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--sources", type=int, default=0,
                        help="loopback source addresses 127.0.0.2... (default: one per 20,000 sessions)")
    parser.add_argument("--profile", metavar="FILE", help="py-spy the server over the window into FILE (raw)")
    parser.add_argument("--join-concurrency", type=int, default=32, help="joins in flight per client process")
    asyncio.run(main(parser.parse_args()))
