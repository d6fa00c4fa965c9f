"""``switchboard loadtest``: synthetic signaling participants against a node on this machine.

N participants (the Python SDK, :class:`signaling.client.Client`, so pings, acks, resumes and
resends behave as a real client's) join R rooms over a ramp, send ``signal`` messages to random
peers of their room at a fixed rate, and leave. The summary gives joins (latency p50/p99), messages
sent and received per second, relay latency p50/p99 (sender and receiver share this process's
clock), resumes and errors by code. Signaling only: no media is published.

Bounded on every side: at most :data:`MAX_PARTICIPANTS` participants, :data:`MAX_RATE` messages
per second each, a run time of ramp + duration, a settle phase of at most ``settle`` seconds for
messages in flight, a leave phase of at most ``leave_timeout``, and a hard deadline above all of
it that cancels whatever is left.

Loopback only unless ``--allow-remote``: the host is resolved before anything connects, every
address must be in 127.0.0.0/8 or ::1, and the connections use exactly the addresses checked (a
second DNS answer cannot redirect them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import socket
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import click
from aiohttp.abc import AbstractResolver, ResolveResult
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from yarl import URL

from signaling.client import (
    Client,
    ClientError,
    Closed,
    ErrorReceived,
    Event,
    Reconnecting,
    Rejoined,
    Resumed,
    SignalReceived,
)
from signaling.core.backoff import Backoff
from signaling.core.errors import PeerError
from signaling.core.exits import Exit
from signaling.core.loopback import is_loopback
from signaling.runtime.aio import cancel_and_wait

MAX_PARTICIPANTS = 5000
MAX_RATE = 50.0
MAX_DURATION = 3600.0
#: New connections per second the default ramp aims at: under a server's default per-address
#: connection rate (50/s), so a default run does not trip the server's own limiter.
DEFAULT_JOIN_RATE = 40.0
#: Rooms participants spread over unless --rooms says otherwise (never more than participants).
DEFAULT_ROOMS = 10
#: Latency samples kept per series (a uniform reservoir beyond that).
SAMPLES = 100_000

Resolve = Callable[[str, int], list[str]]

#: Exit code of a run that completed with failed joins or hit its hard deadline.
EXIT_FAILURES = 1


# -- target check (before any connection) --------------------------------------------------------


class TargetRefused(PeerError):
    """The URL is not a loopback WebSocket URL (and ``--allow-remote`` was not given)."""


class TargetUnresolvable(PeerError):
    """The host name does not resolve."""


def system_resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a DNS lookup; no connection)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetUnresolvable(f"cannot resolve {host}: {exc}") from None
    return sorted({str(info[4][0]) for info in infos})


def check_target(url: str, *, allow_remote: bool, resolve: Resolve = system_resolve) -> list[str]:
    """Validate a ``ws(s)://`` URL; unless ``allow_remote``, return its addresses, all loopback.

    Raises :class:`TargetRefused` (or :class:`TargetUnresolvable`) before anything connects.
    """
    try:
        u = URL(url)
    except (ValueError, TypeError) as exc:
        raise TargetRefused(f"not a URL: {exc}") from None
    if u.scheme not in ("ws", "wss") or not u.host:
        raise TargetRefused("expected ws://HOST[:PORT]/ws (or wss://)")
    if allow_remote:
        return []
    host = u.host.strip("[]")
    addresses = resolve(host, u.port or 80)
    if not addresses:
        raise TargetUnresolvable(f"{host} resolves to nothing")
    remote = [a for a in addresses if not is_loopback(a)]
    if remote:
        raise TargetRefused(
            f"refusing to load-test {host} ({', '.join(remote)}): not loopback. "
            "Only 127.0.0.0/8 and ::1 are allowed without --allow-remote"
        )
    return addresses


class PinnedResolver(AbstractResolver):
    """Answers only with the addresses :func:`check_target` approved (no second DNS answer)."""

    def __init__(self, host: str, addresses: list[str]) -> None:
        self._host = host
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.strip("[]") != self._host:
            raise OSError(f"loadtest: {host} was not checked")
        results: list[ResolveResult] = []
        for address in self._addresses:
            fam = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family not in (socket.AF_UNSPEC, fam):
                continue
            results.append(ResolveResult(hostname=host, host=address, port=port, family=fam, proto=0,
                                         flags=socket.AI_NUMERICHOST))
        if not results:
            raise OSError(f"loadtest: no approved address of {host} for {family!r}")
        return results

    async def close(self) -> None:
        return None


# -- numbers (pure) -------------------------------------------------------------------------------


class Reservoir:
    """A bounded uniform sample of a series (Vitter's algorithm R) and its exact count."""

    def __init__(self, size: int = SAMPLES, rng: random.Random | None = None) -> None:
        self.size = size
        self.count = 0
        self.values: list[float] = []
        self._rng = rng or random.Random(0)

    def add(self, value: float) -> None:
        self.count += 1
        if len(self.values) < self.size:
            self.values.append(value)
            return
        slot = self._rng.randrange(self.count)
        if slot < self.size:
            self.values[slot] = value

    def percentile(self, q: float) -> float | None:
        return percentile(self.values, q)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in [0, 100]); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n·q/100), at least the first
    return ordered[min(len(ordered), int(rank)) - 1]


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1000, 2) if seconds is not None else None


_STATUS = re.compile(r"status=(\d{3})")
_JOIN_ERROR = re.compile(r"could not join: ([a-z][a-z-]+):")


def classify_failure(reason: str, code: int | None = None) -> str:
    """A short, bounded key for why a join or a connection failed."""
    if m := _JOIN_ERROR.search(reason):
        return m.group(1)
    if m := _STATUS.search(reason):
        return f"http-{m.group(1)}"
    if "ConnectionRefused" in reason or "Connect call failed" in reason:
        return "connect-refused"
    if code is not None:
        return f"close-{code}"
    if "timeout" in reason.lower() or "TimeoutError" in reason:
        return "timeout"
    return "connection-failed"


@dataclass(frozen=True, slots=True)
class LoadConfig:
    url: str
    participants: int
    rooms: int
    duration: float
    #: ``signal`` messages per second per participant (0: join and idle).
    rate: float = 1.0
    #: Seconds over which joins are spread.
    ramp: float = 0.0
    #: Seconds one participant may take to join (connect + welcome, retries included).
    join_timeout: float = 10.0
    #: Most seconds to wait, once sending stops, for messages still in flight.
    settle: float = 2.0
    #: Most seconds the participants get to leave.
    leave_timeout: float = 5.0
    #: Room names are ``{room_prefix}-{run id}-{k}``.
    room_prefix: str = "loadtest"
    seed: int | None = None
    #: Seconds after which everything still running is cancelled (None: the sum of the phases
    #: above plus 10 s).
    deadline: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.participants <= MAX_PARTICIPANTS:
            raise ValueError(f"participants must be within 1..{MAX_PARTICIPANTS}")
        if not 1 <= self.rooms <= self.participants:
            raise ValueError("rooms must be within 1..participants")
        if not 0 < self.duration <= MAX_DURATION:
            raise ValueError(f"duration must be within (0, {MAX_DURATION:g}] seconds")
        if not 0 <= self.rate <= MAX_RATE:
            raise ValueError(f"rate must be within 0..{MAX_RATE:g} messages/s")
        if not 0 <= self.ramp <= MAX_DURATION:
            raise ValueError("ramp must be within 0..3600 seconds")

    @property
    def hard_deadline(self) -> float:
        """Seconds after which the run is cancelled, whatever it is doing."""
        if self.deadline is not None:
            return self.deadline
        return self.ramp + self.join_timeout + self.duration + self.settle + self.leave_timeout + 10.0


@dataclass(slots=True)
class Summary:
    url: str
    participants: int
    rooms: int
    duration_s: float
    rate: float
    joined: int = 0
    join_failed: int = 0
    join_p50_ms: float | None = None
    join_p99_ms: float | None = None
    sent: int = 0
    received: int = 0
    sent_per_s: float = 0.0
    received_per_s: float = 0.0
    relay_p50_ms: float | None = None
    relay_p99_ms: float | None = None
    #: Signals neither received nor refused with an error (counted after the settle phase).
    unaccounted: int = 0
    resumes: int = 0
    rejoins: int = 0
    reconnects: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    #: Worst lateness of this process's own event loop (ms): if high, the latencies above are
    #: the load generator's, not the server's.
    loop_lag_max_ms: float = 0.0
    elapsed_s: float = 0.0
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.join_failed == 0 and not self.timed_out


# -- the run -------------------------------------------------------------------------------------


class LoadTest:
    """One run. ``await LoadTest(config, addresses).run()`` → :class:`Summary`."""

    def __init__(self, config: LoadConfig, addresses: list[str] | None = None) -> None:
        self.config = config
        self._addresses = addresses or []
        self._rng = random.Random(config.seed)
        run_id = uuid.UUID(int=self._rng.getrandbits(128)).hex[:6] if config.seed is not None else uuid.uuid4().hex[:6]
        self.rooms = [f"{config.room_prefix}-{run_id}-{k}" for k in range(config.rooms)]
        self.joined = 0
        self.join_failed = 0
        self.sent = 0
        self.received = 0
        self.refused = 0  # signals answered with an error (their cseq came back)
        self.reconnects = 0
        self.resumes = 0
        self.rejoins = 0
        self.errors: Counter[str] = Counter()
        self.join_latency = Reservoir(rng=random.Random(1))
        self.relay_latency = Reservoir(rng=random.Random(2))
        self.loop_lag = 0.0
        self.phase = "starting"
        self._changed = asyncio.Event()
        self._leave = asyncio.Event()
        self._sending_done = False
        self._first_join: float | None = None
        self._stop_at = 0.0

    # What the progress display reads.
    def status(self) -> str:
        errors = sum(self.errors.values())
        return (f"{self.phase}: joined {self.joined}/{self.config.participants} "
                f"failed {self.join_failed} sent {self.sent} recv {self.received} errors {errors}")

    async def run(self, on_tick: Callable[[LoadTest], None] | None = None) -> Summary:
        cfg = self.config
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._stop_at = started + cfg.ramp + cfg.duration
        connector: aiohttp.TCPConnector
        host = URL(cfg.url).host or ""
        if self._addresses:
            connector = aiohttp.TCPConnector(limit=0, resolver=PinnedResolver(host.strip("[]"), self._addresses))
        else:
            connector = aiohttp.TCPConnector(limit=0)
        timed_out = False
        async with aiohttp.ClientSession(connector=connector) as http:
            ticker = loop.create_task(self._tick(on_tick), name="loadtest:tick")
            try:
                async with asyncio.timeout(cfg.hard_deadline):
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._coordinate(), name="loadtest:coordinate")
                        for index in range(cfg.participants):
                            delay = cfg.ramp * index / cfg.participants
                            room = self.rooms[index % cfg.rooms]
                            tg.create_task(self._participant(http, index, room, started + delay),
                                           name=f"loadtest:{index}")
            except TimeoutError:
                timed_out = True
            finally:
                await cancel_and_wait(ticker)
        return self._summary(loop.time() - started, timed_out)

    async def _tick(self, on_tick: Callable[[LoadTest], None] | None) -> None:
        loop = asyncio.get_running_loop()
        period = 0.1
        while True:
            before = loop.time()
            await asyncio.sleep(period)
            self.loop_lag = max(self.loop_lag, loop.time() - before - period)
            if on_tick is not None:
                on_tick(self)

    async def _coordinate(self) -> None:
        """Sending ends at ``ramp + duration``; then settle, then everyone leaves."""
        loop = asyncio.get_running_loop()
        self.phase = "joining" if self.config.ramp > 0 else "running"
        ramp_end = self._stop_at - self.config.duration
        await asyncio.sleep(max(0.0, ramp_end - loop.time()))
        self.phase = "running"
        await asyncio.sleep(max(0.0, self._stop_at - loop.time()))
        self._sending_done = True
        self.phase = "settling"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.settle):
                while not self._caught_up():
                    self._changed.clear()
                    await self._changed.wait()
        self.phase = "leaving"
        self._leave.set()

    def _caught_up(self) -> bool:
        return self.received + self.refused >= self.sent

    def _note(self) -> None:
        if self._sending_done:
            self._changed.set()

    async def _participant(self, http: aiohttp.ClientSession, index: int, room: str, start_at: float) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, start_at - loop.time()))
        if self._leave.is_set():
            return
        client = Client(
            cfg.url, room, name=f"lt-{index}", subscribe=False, session=http,
            connect_timeout=cfg.join_timeout, backoff=Backoff(rng=random.Random(self._rng.random())),
        )
        t0 = loop.time()
        try:
            try:
                async with asyncio.timeout(cfg.join_timeout):
                    await client.connect()
            except (ClientError, TimeoutError) as exc:
                await self._join_failed(client, exc)
                return
            now = loop.time()
            self.joined += 1
            self.join_latency.add(now - t0)
            if self._first_join is None:
                self._first_join = now
            async with asyncio.TaskGroup() as tg:
                reader = tg.create_task(self._read(client), name=f"loadtest:{index}:read")
                await self._send(client, index)
                await self._leave.wait()
                await self._leave_room(client)
                await client.close()
                await reader
        finally:
            await client.close()

    async def _leave_room(self, client: Client) -> None:
        """Send ``leave`` and wait for the server's close (1000) that confirms it.

        Not ``Client.leave()``: that cannot wait for the server while the client's own reader
        runs, and closes within 0.5 s; a loaded server may then never read the leave (the
        socket is reset with it unread) and keep the session for its whole grace period.
        """
        try:
            await client.send({"type": "leave"})
        except ClientError:
            return  # already closed (kicked, fatal close)
        try:
            async with asyncio.timeout(self.config.leave_timeout):
                await client.closed.wait()
        except TimeoutError:
            self.errors["leave-timeout"] += 1

    async def _join_failed(self, client: Client, exc: BaseException) -> None:
        self.join_failed += 1
        reason, code = str(exc), exc.code if isinstance(exc, ClientError) else None
        if isinstance(exc, TimeoutError):
            # Why the attempts failed: the last Reconnecting event says (the client is closed,
            # so its events end with Closed and this loop cannot wait).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    async for event in client:
                        if isinstance(event, Reconnecting):
                            reason, code = event.reason, event.code
            key = classify_failure(reason, code)
            if key == "connection-failed":
                key = "join-timeout"
        else:
            key = classify_failure(reason, code)
        self.errors[key] += 1

    async def _read(self, client: Client) -> None:
        loop = asyncio.get_running_loop()
        async for event in client:
            self._account(event, loop.time())

    def _account(self, event: Event, now: float) -> None:
        match event:
            case SignalReceived(data=data):
                self.received += 1
                sent_at = data.get("lt") if isinstance(data, dict) else None
                if isinstance(sent_at, int | float):
                    self.relay_latency.add(now - sent_at)
                self._note()
            case ErrorReceived(code=code, cseq=cseq):
                self.errors[code] += 1
                if cseq is not None:
                    self.refused += 1
                    self._note()
            case Reconnecting(code=code, reason=reason):
                self.reconnects += 1
                self.errors[classify_failure(reason, code)] += 1
            case Resumed():
                self.resumes += 1
            case Rejoined():
                self.rejoins += 1
            case Closed(code=code, reason=reason):
                if not self._leave.is_set() and code not in (None, 1000):
                    self.errors[classify_failure(reason, code)] += 1
            case _:
                pass

    async def _send(self, client: Client, index: int) -> None:
        rate = self.config.rate
        if rate <= 0:
            return
        loop = asyncio.get_running_loop()
        rng = random.Random(self._rng.random())
        interval = 1.0 / rate
        next_at = loop.time() + rng.uniform(0, interval)
        while True:
            now = loop.time()
            if now >= self._stop_at:
                return
            if next_at > now:
                await asyncio.sleep(min(next_at, self._stop_at) - now)
                continue
            peers = list(client.peers)
            if peers:
                try:
                    await client.signal(rng.choice(peers), {"lt": loop.time(), "i": index})
                except ClientError:
                    return  # closed under us (kicked, fatal close): the reader counted why
                self.sent += 1
            next_at += interval
            if next_at < now - 1.0:
                next_at = now  # fell behind by more than a second: do not burst to catch up

    def _summary(self, elapsed: float, timed_out: bool) -> Summary:
        cfg = self.config
        window = self._stop_at - self._first_join if self._first_join is not None else 0.0
        window = max(window, 1e-9)
        return Summary(
            url=cfg.url,
            participants=cfg.participants,
            rooms=cfg.rooms,
            duration_s=cfg.duration,
            rate=cfg.rate,
            joined=self.joined,
            join_failed=self.join_failed,
            join_p50_ms=_ms(self.join_latency.percentile(50)),
            join_p99_ms=_ms(self.join_latency.percentile(99)),
            sent=self.sent,
            received=self.received,
            sent_per_s=round(self.sent / window, 1) if self.joined else 0.0,
            received_per_s=round(self.received / window, 1) if self.joined else 0.0,
            relay_p50_ms=_ms(self.relay_latency.percentile(50)),
            relay_p99_ms=_ms(self.relay_latency.percentile(99)),
            unaccounted=max(0, self.sent - self.received - self.refused),
            resumes=self.resumes,
            rejoins=self.rejoins,
            reconnects=self.reconnects,
            errors=dict(sorted(self.errors.items())),
            loop_lag_max_ms=round(self.loop_lag * 1000, 1),
            elapsed_s=round(elapsed, 2),
            timed_out=timed_out,
        )


async def preflight(url: str, addresses: list[str], wait: float = 5.0) -> None:
    """GET ``/healthz`` once, so an absent server fails in seconds, not per participant."""
    u = URL(url)
    health = u.with_scheme("https" if u.scheme == "wss" else "http").with_path("/healthz").with_query(None)
    host = (u.host or "").strip("[]")
    connector = aiohttp.TCPConnector(resolver=PinnedResolver(host, addresses)) if addresses else aiohttp.TCPConnector()
    limit = aiohttp.ClientTimeout(total=wait)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=limit) as http,
        http.get(health, allow_redirects=False) as response,
    ):
        await response.read()


# -- the command ---------------------------------------------------------------------------------


def _rows(summary: Summary) -> Iterator[tuple[str, str]]:
    s = summary

    def v(x: Any) -> str:
        return "-" if x is None else str(x)

    yield "target", s.url
    rooms = f"{s.rooms} room" + ("" if s.rooms == 1 else "s")
    yield "participants", f"{s.participants} in {rooms}, {s.rate:g} msg/s each, {s.duration_s:g}s"
    yield "joined", f"{s.joined} (failed {s.join_failed})"
    yield "join latency", f"p50 {v(s.join_p50_ms)} ms, p99 {v(s.join_p99_ms)} ms"
    yield "messages sent", f"{s.sent} ({s.sent_per_s:g}/s)"
    yield "messages received", f"{s.received} ({s.received_per_s:g}/s)"
    yield "relay latency", f"p50 {v(s.relay_p50_ms)} ms, p99 {v(s.relay_p99_ms)} ms"
    yield "unaccounted", str(s.unaccounted)
    yield "reconnects", f"{s.reconnects} (resumed {s.resumes}, rejoined {s.rejoins})"
    yield "errors", ", ".join(f"{k}={n}" for k, n in s.errors.items()) or "none"
    yield "loop lag (max)", f"{s.loop_lag_max_ms:g} ms"
    yield "elapsed", f"{s.elapsed_s:g}s{' (HARD DEADLINE HIT)' if s.timed_out else ''}"
    if any(key.startswith("http-429") for key in s.errors):
        yield "hint", ("the server refused connections (429): it limits new connections per client "
                       "address (default 50/s, 500 open); use a longer --ramp or fewer participants")


@click.command()
@click.option("--url", default="ws://127.0.0.1:8080/ws", show_default=True, help="Signaling WebSocket URL.")
@click.option("--participants", "-n", default=100, show_default=True,
              type=click.IntRange(1, MAX_PARTICIPANTS), help=f"Synthetic participants (at most {MAX_PARTICIPANTS}).")
@click.option("--rooms", "-r", default=None, type=click.IntRange(min=1),
              help=f"Rooms they spread over [default: {DEFAULT_ROOMS}, or one per participant when fewer].")
@click.option("--duration", "-d", default=10.0, show_default=True, type=click.FloatRange(0, MAX_DURATION, min_open=True),
              help="Seconds of sending after the ramp.")
@click.option("--rate", default=1.0, show_default=True, type=click.FloatRange(0, MAX_RATE),
              help="signal messages per second per participant.")
@click.option("--ramp", default=None, type=click.FloatRange(0, MAX_DURATION),
              help=f"Seconds over which joins are spread [default: participants/{DEFAULT_JOIN_RATE:g}].")
@click.option("--join-timeout", default=10.0, show_default=True, type=click.FloatRange(0.1, 120), help="Seconds one join may take.")
@click.option("--allow-remote", is_flag=True, help="Allow a target that is not loopback (never against servers you do not run).")
@click.option("--seed", default=None, type=int, help="Seed for peer choice and timing jitter.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (no progress bar).")
def loadtest(
    url: str,
    participants: int,
    rooms: int | None,
    duration: float,
    rate: float,
    ramp: float | None,
    join_timeout: float,
    allow_remote: bool,
    seed: int | None,
    as_json: bool,
) -> None:
    """Load-test a node with synthetic signaling participants (loopback only by default).

    \b
    Exit codes: 0 every participant joined, 1 some joins failed or the hard
    deadline hit, 2 usage (a non-loopback target without --allow-remote),
    4 target unreachable.
    """
    if rooms is None:
        rooms = min(DEFAULT_ROOMS, participants)
    if rooms > participants:
        raise click.BadParameter("more rooms than participants", param_hint="--rooms")
    try:
        addresses = check_target(url, allow_remote=allow_remote)
    except TargetRefused as exc:
        raise click.UsageError(str(exc)) from None
    except TargetUnresolvable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(int(Exit.UNREACHABLE))
    if allow_remote:
        click.echo(f"warning: --allow-remote: {participants} participants against {url}; only against servers you run",
                   err=True)
    config = LoadConfig(
        url=url, participants=participants, rooms=rooms, duration=duration, rate=rate,
        ramp=participants / DEFAULT_JOIN_RATE if ramp is None else ramp,
        join_timeout=join_timeout, seed=seed,
    )
    err = Console(stderr=True, highlight=False)
    summary = asyncio.run(_main(config, addresses, show_progress=not as_json and err.is_terminal, console=err))
    if summary is None:
        sys.exit(int(Exit.UNREACHABLE))
    if as_json:
        click.echo(json.dumps(asdict(summary), indent=2))
    else:
        table = Table(title="loadtest summary", title_justify="left", show_header=False)
        table.add_column("", style="bold")
        table.add_column("")
        for key, value in _rows(summary):
            table.add_row(key, value)
        out = Console(highlight=False)
        if not out.is_terminal:
            out.width = max(out.width, 120)
        out.print(table)
    sys.exit(int(Exit.OK) if summary.ok else EXIT_FAILURES)


async def _main(config: LoadConfig, addresses: list[str], *, show_progress: bool, console: Console) -> Summary | None:
    try:
        await preflight(config.url, addresses)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        why = exc.strerror if isinstance(exc, aiohttp.ClientConnectorError) else (str(exc) or type(exc).__name__)
        click.echo(f"error: cannot reach {config.url}: {why}", err=True)
        return None
    test = LoadTest(config, addresses)
    total = config.ramp + config.duration
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=console, disable=not show_progress, transient=False,
    ) as progress:
        task = progress.add_task(test.status(), total=total)
        loop = asyncio.get_running_loop()
        started = loop.time()

        def tick(t: LoadTest) -> None:
            progress.update(task, description=t.status(), completed=min(total, loop.time() - started))

        summary = await test.run(tick)
        progress.update(task, description=test.status(), completed=total)
    return summary


__all__ = [
    "MAX_PARTICIPANTS", "LoadConfig", "LoadTest", "PinnedResolver", "Reservoir", "Summary", "TargetRefused",
    "TargetUnresolvable", "check_target", "classify_failure", "loadtest", "percentile",
]
