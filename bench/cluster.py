"""Cross-node relay vs same-node relay on a two-node cluster, measured in one run.

One real redis-server and two real signaling nodes (``switchboard serve --redis URL --no-sfu``,
node ids ``a`` and ``b``) on 127.0.0.1; optionally a third, embedded node (memory backend, no
Redis) as the single-process baseline. This process drives N pairs of raw WebSocket clients,
each pair in its own room. In every pair the sender keeps ``window`` numbered ``signal`` messages
of 1-4 KB in flight to the receiver (window 1 is ping-pong: the next leaves when the last
arrived); the receiver timestamps arrivals and acknowledges every 16 ``seq``.

- embedded:   sender and receiver on the embedded node (no Redis at all);
- same-node:  both on node a (the hub looks the peer up in Redis, then delivers locally);
- cross-node: sender on node a, receiver on node b (appended to b's Redis stream, read by b).

Every message carries its number; the receiver checks that 1..sent arrived exactly once and in
order, and that ``seq`` only grows. Latency and throughput count the messages sent after a short
warm-up. The rate limits are lifted: a throughput test is a flood by design.

    python bench/cluster.py                               # default: ~45 s on 2 cores
    python bench/cluster.py --pairs 50 --seconds 5 --windows 1,4,16 --no-embedded
    python bench/cluster.py --messages 2000               # at most 2,000 messages per pair and run
    python bench/cluster.py --replica --no-embedded       # + cross-node with WAIT 1 (a replica attached)

Runs: 1 pair ping-pong first (the path's own latency, nothing queued), then ``--pairs`` pairs at
each ``--windows`` (the nodes saturated: throughput, and latency under load).

Loopback only; bounded in count and time; every process it starts is killed on the way out.
Exit status 1 if a message was lost, duplicated or reordered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

HOST = "127.0.0.1"
#: The receiver acknowledges after this many ``seq`` (as the SDKs do).
ACK_EVERY = 16
#: A pair whose window does not move for this long is declared stalled (a message was lost).
STALL_S = 10.0
#: After the last send, how long the receiver gets to see every message.
DRAIN_S = 10.0
#: Bound of process start-up and of every join.
START_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# -- pure measurement logic (tests/unit/test_bench_cluster.py) -------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100] of an ascending sequence; nan when empty."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least the first
    return ordered[int(min(rank, len(ordered))) - 1]


@dataclass
class Arrivals:
    """Checks that messages numbered 1, 2, 3, ... arrive exactly once and in order."""

    #: The number the next message must carry.
    expected: int = 1
    #: Messages seen, duplicates and late ones included.
    received: int = 0
    duplicates: int = 0
    #: Messages that arrived after a later-numbered one.
    late: int = 0
    #: Numbers skipped over and not seen since.
    missing: set[int] = field(default_factory=set)

    def feed(self, n: int) -> None:
        self.received += 1
        if n == self.expected:
            self.expected += 1
        elif n > self.expected:
            self.missing.update(range(self.expected, n))
            self.expected = n + 1
        elif n in self.missing:
            self.missing.discard(n)
            self.late += 1
        else:
            self.duplicates += 1

    def complete(self, sent: int) -> bool:
        """Every one of ``1..sent`` has arrived (in order or not)."""
        return self.expected > sent and not self.missing

    def problems(self, sent: int) -> list[str]:
        """What went wrong, given that ``1..sent`` were sent; empty when exactly once, in order."""
        out = []
        lost = len(self.missing) + max(0, sent - (self.expected - 1))
        if lost:
            out.append(f"{lost} lost")
        if self.duplicates:
            out.append(f"{self.duplicates} duplicated")
        if self.late:
            out.append(f"{self.late} out of order")
        if self.expected - 1 > sent:
            out.append(f"{self.expected - 1 - sent} never sent")
        return out


# -- processes -------------------------------------------------------------------------------------


class Processes:
    """The processes this run started; :meth:`close` ends every one of them (TERM, then KILL)."""

    def __init__(self, logdir: str) -> None:
        self.logdir = logdir
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    def log(self, name: str) -> str:
        return os.path.join(self.logdir, f"{name}.log")

    async def spawn(self, name: str, cmd: list[str]) -> asyncio.subprocess.Process:
        err = os.open(self.log(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            proc = await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=asyncio.subprocess.PIPE, stderr=err)
        finally:
            os.close(err)  # the child has its own copy
        self.procs[name] = proc
        return proc

    def tail(self, name: str, lines: int = 15) -> str:
        with open(self.log(name), errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU time of each process so far (Linux /proc; empty elsewhere)."""
        out = {}
        for name, proc in self.procs.items():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{proc.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        out["load generator"] = time.process_time()
        return out

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.returncode is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")

    async def close(self) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.terminate()
        for name, proc in self.procs.items():
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                print(f"{name} ignored SIGTERM for 5 s: killed", file=sys.stderr)
                proc.kill()
                await proc.wait()


async def start_redis(procs: Processes, executable: str, replica_of: str | None = None) -> str:
    port = free_port()
    cmd = [executable, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
           "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
    if replica_of is not None:
        cmd += ["--replicaof", HOST, replica_of.rsplit(":", 1)[1].split("/")[0]]
    await procs.spawn("redis-replica" if replica_of else "redis", cmd)
    async with asyncio.timeout(START_S):
        while True:
            procs.check_alive()
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection(HOST, port)
                try:
                    writer.write(b"PING\r\n")
                    if (await reader.readline()).startswith(b"+PONG"):
                        return f"redis://{HOST}:{port}/0"
                finally:
                    writer.close()
                    await writer.wait_closed()
            await asyncio.sleep(0.05)


async def start_node(procs: Processes, http: aiohttp.ClientSession, node_id: str, redis_url: str | None,
                     extra: Sequence[str] = ()) -> str:
    """A signaling node on a free loopback port; returns its ``/ws`` URL once ``/readyz`` is 200."""
    port = free_port()
    cmd = [sys.executable, "-m", "signaling", "serve", "--host", HOST, "--port", str(port), "--node-id", node_id,
           "--no-sfu", "--log-level", "error", "--drain-timeout", "2",
           # A throughput test is a flood by design: the relay, not the limiters, is measured.
           "--set", "security.message_rate=1e9", "--set", "security.message_burst=1e9",
           "--set", "security.connection_rate_per_ip=1e9", "--set", "security.connection_burst_per_ip=1e9",
           "--set", "security.max_connections_per_ip=1000000"]
    if redis_url is not None:
        cmd += ["--redis", redis_url, *extra]
    proc = await procs.spawn(f"node-{node_id}", cmd)
    assert proc.stdout is not None
    async with asyncio.timeout(START_S):
        line = await proc.stdout.readline()
        if b"listening" not in line:
            procs.check_alive()
            raise RuntimeError(f"node {node_id} said {line!r} instead of listening")
        while True:
            procs.check_alive()
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://{HOST}:{port}/readyz") as resp:
                    if resp.status == 200:
                        return f"ws://{HOST}:{port}/ws"
            await asyncio.sleep(0.1)


# -- load ------------------------------------------------------------------------------------------


@dataclass
class Load:
    pairs: int
    #: Messages in flight per pair (1: ping-pong).
    window: int
    #: Measured seconds, after ``warmup`` seconds of sending that are not measured.
    seconds: float
    warmup: float
    #: At most this many messages per pair (0: as many as ``warmup + seconds`` allow).
    messages: int = 0

    @property
    def label(self) -> str:
        return f"{self.pairs}x{self.window}"


@dataclass
class Result:
    path: str
    load: Load
    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    sent: int
    delivered: int
    problems: list[str]
    #: Process name -> % of one core it used while the pairs ran (joins excluded).
    cpu: dict[str, float]
    #: CPU seconds of the servers (Redis and the nodes, not the load generator) in the window.
    server_cpu_s: float = 0.0

    @property
    def server_us_per_msg(self) -> float:
        """Server CPU per delivered message: what a loaded (shared) machine cannot distort."""
        return self.server_cpu_s * 1e6 / self.delivered if self.delivered else float("nan")


class Pair:
    """A sender and a receiver in one room; the receiver checks what arrives."""

    def __init__(self, http: aiohttp.ClientSession, idx: int, load: Load) -> None:
        self.http = http
        self.idx = idx
        self.load = load
        rng = random.Random(idx)
        self.payloads = ["x" * rng.randrange(1000, 4000) for _ in range(16)]
        self.credit = asyncio.Semaphore(load.window)
        self.arrivals = Arrivals()
        self.latencies: list[float] = []
        self.counted = 0
        self.sent = 0
        #: When the last message inside the measured window left (throughput's time span).
        self.last_measured_send = 0.0
        self.sending = True
        self.all_in = asyncio.Event()
        self.problems: list[str] = []
        self.tx: aiohttp.ClientWebSocketResponse | None = None
        self.rx: aiohttp.ClientWebSocketResponse | None = None
        self.rx_peer = ""
        #: Send times whose messages count in latency and throughput: [start, end).
        self.measured = (0.0, 0.0)

    async def join(self, send_url: str, recv_url: str) -> None:
        room = f"bench{self.idx}"
        self.tx = await self.http.ws_connect(send_url)
        await self.tx.send_str(json.dumps({"type": "join", "room": room, "name": "tx", "subscribe": False}))
        await self._expect(self.tx, "welcome")
        self.rx = await self.http.ws_connect(recv_url)
        await self.rx.send_str(json.dumps({"type": "join", "room": room, "name": "rx", "subscribe": False}))
        self.rx_peer = (await self._expect(self.rx, "welcome"))["peer"]
        # The sender's node knows the receiver once peer-joined reached it (through Redis if remote).
        joined = await self._expect(self.tx, "peer-joined")
        assert joined["peer"]["id"] == self.rx_peer, joined

    async def _expect(self, ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
        try:
            async with asyncio.timeout(START_S):
                while True:
                    msg = await ws.receive()
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        raise ConnectionError(f"pair {self.idx}: closed while waiting for {kind}: {ws.close_code}")
                    data: dict[str, Any] = json.loads(msg.data)
                    if data["type"] == "ping":
                        await ws.send_str(json.dumps({"type": "pong", "t": data["t"]}))
                    elif data["type"] == kind:
                        return data
                    elif data["type"] == "error":
                        raise RuntimeError(f"pair {self.idx}: waiting for {kind}: {data}")
        except TimeoutError:
            raise RuntimeError(f"pair {self.idx}: no {kind} within {START_S:.0f} s") from None

    async def run(self, t0: float) -> None:
        """Send from ``t0`` for warm-up + seconds, wait for every message, then both leave."""
        assert self.tx is not None
        assert self.rx is not None
        start = t0 + self.load.warmup
        self.measured = (start, start + self.load.seconds)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._read(self.tx, receiver=False))
            tasks.create_task(self._read(self.rx, receiver=True))
            await self._send()
            self.sending = False
            self._check_all_in()
            try:
                async with asyncio.timeout(DRAIN_S):
                    await self.all_in.wait()
            except TimeoutError:
                self.problems.append(f"not all in {DRAIN_S:.0f} s after the last send")
            for ws in (self.tx, self.rx):
                await ws.send_str(json.dumps({"type": "leave"}))
            # The server closes both sockets (1000); the readers end there.
        self.problems += self.arrivals.problems(self.sent)

    async def _send(self) -> None:
        assert self.tx is not None
        start, until = self.measured
        limit = self.load.messages or sys.maxsize
        while time.perf_counter() < until and self.sent < limit:
            try:
                async with asyncio.timeout(STALL_S):
                    await self.credit.acquire()
            except TimeoutError:
                self.problems.append(f"window stalled {STALL_S:.0f} s after #{self.sent}")
                return
            n = self.sent + 1
            t = time.perf_counter()
            data = {"n": n, "t": t, "pad": self.payloads[n % 16]}
            await self.tx.send_str(json.dumps({"type": "signal", "to": self.rx_peer, "cseq": n, "data": data}))
            self.sent = n
            if t >= start:
                self.last_measured_send = t

    def _check_all_in(self) -> None:
        if not self.sending and self.arrivals.complete(self.sent):
            self.all_in.set()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, *, receiver: bool) -> None:
        last_seq = acked = 0
        start, end = self.measured
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            kind = data["type"]
            if kind == "signal" and receiver:
                now = time.perf_counter()
                body = data["data"]
                self.arrivals.feed(body["n"])
                if start <= body["t"] < end:
                    self.latencies.append(now - body["t"])
                    self.counted += 1
                self.credit.release()
                self._check_all_in()
            elif kind == "ping":
                await ws.send_str(json.dumps({"type": "pong", "t": data["t"]}))
            elif kind == "error":
                self.problems.append(f"error {data.get('code')}: {data.get('message')}")
            seq = data.get("seq")
            if seq is not None:
                if seq <= last_seq:
                    self.problems.append(f"seq went from {last_seq} to {seq}")
                last_seq = seq
                if seq - acked >= ACK_EVERY:
                    acked = seq
                    await ws.send_str(json.dumps({"type": "ack", "seq": seq}))


async def measure(procs: Processes, http: aiohttp.ClientSession, path: str, send_url: str, recv_url: str, load: Load) -> Result:
    pairs = [Pair(http, i, load) for i in range(load.pairs)]
    async with asyncio.timeout(START_S + load.warmup + load.seconds + STALL_S + DRAIN_S + 30):
        await asyncio.gather(*(p.join(send_url, recv_url) for p in pairs))
        cpu_before = procs.cpu_seconds()
        t0 = time.perf_counter()
        await asyncio.gather(*(p.run(t0) for p in pairs))
        wall = time.perf_counter() - t0
        cpu_after = procs.cpu_seconds()
    latencies = sorted(lat for p in pairs for lat in p.latencies)
    problems = [f"pair {p.idx}: {x}" for p in pairs for x in p.problems]
    # Sending in the measured window ran for `seconds`, or less when --messages ran out first.
    span = min(load.seconds, max(p.last_measured_send for p in pairs) - (t0 + load.warmup))
    return Result(
        path=path,
        load=load,
        msgs_per_s=sum(p.counted for p in pairs) / max(span, 1e-3),
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        sent=sum(p.sent for p in pairs),
        delivered=sum(p.arrivals.received for p in pairs),
        problems=problems,
        cpu={name: (cpu_after[name] - cpu_before[name]) / wall * 100 for name in cpu_after if name in cpu_before},
        server_cpu_s=sum(
            cpu_after[name] - cpu_before[name]
            for name in cpu_after
            if name in cpu_before and name != "load generator"
        ),
    )


# -- report ----------------------------------------------------------------------------------------


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def report(results: list[Result], args: argparse.Namespace) -> None:
    cap = f", at most {args.messages} per pair" if args.messages else ""
    print(f"{args.seconds:g} s per run after {args.warmup:g} s warm-up{cap}, payload 1-4 KB, "
          f"{os.cpu_count()} CPUs shared by Redis, the nodes and this load generator")
    print("load = pairs x messages in flight per pair (x1: ping-pong)")
    print(f"{'load':>7} {'path':<11} {'msgs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'sent':>8} {'delivered':>9}  check")
    for r in results:
        check = "exactly once, in order" if not r.problems else f"FAIL: {len(r.problems)} problem(s)"
        print(f"{r.load.label:>7} {r.path:<11} {r.msgs_per_s:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
              f"{r.sent:>8} {r.delivered:>9}  {check}")
    by_key = {(r.load.label, r.path): r for r in results}
    for label in dict.fromkeys(r.load.label for r in results):
        for num, den in (("cross-node", "same-node"), ("same-node", "embedded"), ("cross+wait", "cross-node")):
            a, b = by_key.get((label, num)), by_key.get((label, den))
            if a is None or b is None:
                continue
            print(f"{label:>7} {num}/{den}: throughput {ratio(a.msgs_per_s, b.msgs_per_s):.2f}x, "
                  f"p50 {ratio(a.p50_ms, b.p50_ms):.2f}x, p99 {ratio(a.p99_ms, b.p99_ms):.2f}x")
    names = list(dict.fromkeys(name for r in results for name in r.cpu))
    print("CPU while the pairs ran, % of one core: " + ", ".join(names))
    for r in results:
        print(f"{r.load.label:>7} {r.path:<11} " + " ".join(f"{r.cpu.get(name, float('nan')):>5.0f}" for name in names))
    print("server CPU (Redis + nodes) per delivered message, and the efficiency against embedded:")
    for r in results:
        base = by_key.get((r.load.label, "embedded"))
        rel = f"  embedded/this {ratio(base.server_us_per_msg, r.server_us_per_msg):.2f}x" if base else ""
        print(f"{r.load.label:>7} {r.path:<11} {r.server_us_per_msg:>8.0f} us/msg{rel}")
    for r in results:
        for problem in r.problems[:10]:
            print(f"  {r.load.label} {r.path}: {problem}")


@contextlib.asynccontextmanager
async def cluster(args: argparse.Namespace) -> AsyncIterator[tuple[Processes, aiohttp.ClientSession, dict[str, str]]]:
    """Redis, nodes a and b (and the embedded node): their URLs; everything stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="sb-bench-cluster-") as logdir:
        procs = Processes(logdir)
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                redis_url = await start_redis(procs, args.redis_server)
                urls = {
                    "a": await start_node(procs, http, "a", redis_url),
                    "b": await start_node(procs, http, "b", redis_url),
                }
                if args.replica:
                    # A replica of the same Redis, and nodes c, d that WAIT for it after every
                    # ledger batch and relay: the durable-before-confirmed cost, same run.
                    await start_redis(procs, args.redis_server, replica_of=redis_url)
                    wait = ["--set", "cluster.ledger_wait_replicas=1"]
                    urls["c"] = await start_node(procs, http, "c", redis_url, wait)
                    urls["d"] = await start_node(procs, http, "d", redis_url, wait)
                if args.embedded:
                    urls["embedded"] = await start_node(procs, http, "solo", None)
                yield procs, http, urls
                procs.check_alive()
        except BaseException:
            for name in procs.procs:
                tail = procs.tail(name)
                if tail.strip():
                    print(f"--- {name} (last lines of its log)\n{tail}", file=sys.stderr)
            raise
        finally:
            await procs.close()


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=20, help="sender/receiver pairs, one room each [20]")
    ap.add_argument("--seconds", type=float, default=4.0, help="measured seconds per run [4]")
    ap.add_argument("--warmup", type=float, default=0.5, help="seconds sent before measuring [0.5]")
    ap.add_argument("--windows", default="1,8", help="messages in flight per pair, one run each; 1 = ping-pong [1,8]")
    ap.add_argument("--messages", type=int, default=0,
                    help="at most this many messages per pair and run, all measured: no warm-up [no cap]")
    ap.add_argument("--no-unloaded", dest="unloaded", action="store_false",
                    help="skip the first run: 1 pair ping-pong (latency of the path itself, no queueing)")
    ap.add_argument("--no-embedded", dest="embedded", action="store_false", help="skip the single-process baseline")
    ap.add_argument("--replica", action="store_true",
                    help="also attach a replica and run cross-node on nodes c, d with cluster.ledger_wait_replicas=1")
    ap.add_argument("--redis-server", default=shutil.which("redis-server") or "/usr/bin/redis-server")
    args = ap.parse_args()
    args.windows = [int(w) for w in args.windows.split(",")]
    if args.messages:
        args.warmup = 0.0  # a counted run measures every message it sends
    if (not 1 <= args.pairs <= 500 or not 0 < args.seconds <= 60 or not 0 <= args.warmup <= 10
            or not all(1 <= w <= 64 for w in args.windows) or not 0 <= args.messages <= 1_000_000):
        ap.error("bounded on purpose: 1-500 pairs, up to 60 s (+10 s warm-up), windows of 1-64, 1,000,000 messages")
    if not os.path.exists(args.redis_server):
        ap.error(f"no redis-server at {args.redis_server} (apt-get install redis-server)")
    return args


async def main(args: argparse.Namespace) -> int:
    # SIGTERM cancels the run like Ctrl-C does, so the processes it started are stopped too.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    results = []
    async with cluster(args) as (procs, http, urls):
        # path -> (sender's node, receiver's node)
        paths = {"embedded": ("embedded", "embedded")} if args.embedded else {}
        paths |= {"same-node": ("a", "a"), "cross-node": ("a", "b")}
        if args.replica:
            paths["cross+wait"] = ("c", "d")
        loads = [Load(1, 1, args.seconds, args.warmup, args.messages)] if args.unloaded else []
        loads += [Load(args.pairs, w, args.seconds, args.warmup, args.messages) for w in args.windows]
        for load in loads:
            for path, (tx, rx) in paths.items():
                results.append(await measure(procs, http, path, urls[tx], urls[rx], load))
    report(results, args)
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
