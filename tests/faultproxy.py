"""A small TCP fault proxy for tests: cut (RST), blackhole (half-open), delay, throttle, latency,
and random short outages (stalls and cuts).

Listens on 127.0.0.1 only and forwards to a loopback upstream. Every connection's pump tasks
are owned by the proxy and cancelled by ``close()``; nothing outlives a test. The decisions
(when a chunk arrives, when the next outage comes) are the pure models of tests/netem.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from dataclasses import dataclass, field

from signaling.runtime.aio import cancel_and_wait
from tests.netem import LinkShaper, Outage, OutageConfig, OutageKind, OutagePlan

#: Bytes a direction may hold on their way (latency, bandwidth) before it stops reading its
#: sender: the proxy's queue has a bound, and the sender feels back-pressure as on a real link.
IN_FLIGHT_BYTES = 256 * 1024


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: Chunks on their way under ``latency`` (one timer each), cancelled with the link.
    timers: set[asyncio.TimerHandle] = field(default_factory=set)
    #: Chunks that arrived while the path was dark, delivered in order when it comes back.
    held: list[tuple[asyncio.StreamWriter, bytes]] = field(default_factory=list)

    def reset(self) -> None:
        """Close both sides with RST (SO_LINGER 0), like a NAT or a crashed middlebox."""
        for writer in (self.client, self.upstream):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


class _Flight:
    """Bytes of one direction scheduled for delivery and not yet delivered."""

    def __init__(self) -> None:
        self.bytes = 0
        self._changed = asyncio.Event()

    def add(self, n: int) -> None:
        self.bytes += n
        self._changed.set()

    async def below(self, limit: int) -> None:
        while self.bytes > limit:
            self._changed.clear()
            await self._changed.wait()


class FaultProxy:
    def __init__(self, upstream_port: int, *, source: str | None = None) -> None:
        self.upstream_port = upstream_port
        #: Loopback address the upstream connections come from (None: the kernel's choice).
        self.source = source
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._open = asyncio.Event()
        self._open.set()
        self._blackholed = False
        self._stalled = False
        self.delay = 0.0
        #: Bytes per second per direction; 0 = unlimited.
        self.rate = 0
        #: One-way latency of each direction (seconds), plus a uniform random +-``jitter`` per
        #: chunk. Unlike ``delay`` it does not hold the pump: chunks are in flight concurrently,
        #: and delivered in order (a late chunk holds back the ones behind it, as on TCP).
        #: With a latency, ``rate`` serialises chunks on the wire instead of holding the pump.
        self.latency = 0.0
        self.jitter = 0.0
        self.rng = random.Random(0)
        self.connections = 0
        #: Outages applied so far by :meth:`start_outages`, in order.
        self.outages: list[Outage] = []
        self._outage_task: asyncio.Task[None] | None = None

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def active(self) -> int:
        return len(self._links)

    def cut(self) -> int:
        """RST every open connection; return how many."""
        links = list(self._links)
        for link in links:
            link.reset()
            self._links.discard(link)
        return len(links)

    def blackhole(self, on: bool) -> None:
        """Stop forwarding (and accepting) without closing anything: a half-open path."""
        self._blackholed = on
        self._update()

    def stall(self, on: bool) -> None:
        """Like :meth:`blackhole`, for a random outage (independent of a test's own blackhole)."""
        self._stalled = on
        self._update()

    def _update(self) -> None:
        if self._blackholed or self._stalled:
            self._open.clear()
            return
        self._open.set()
        for link in self._links:
            held, link.held = link.held, []
            for writer, data in held:
                if not writer.transport.is_closing():
                    writer.write(data)

    def start_outages(self, config: OutageConfig, rng: random.Random) -> None:
        """Apply random stalls and cuts from now until :meth:`stop_outages` or :meth:`close`."""
        assert self._outage_task is None, "outages already running"
        self._outage_task = asyncio.get_running_loop().create_task(self._run_outages(OutagePlan(config, rng)))

    async def stop_outages(self) -> None:
        task, self._outage_task = self._outage_task, None
        if task is not None:
            await cancel_and_wait(task)
        self.stall(False)

    async def _run_outages(self, plan: OutagePlan) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                outage = plan.next_after(loop.time())
                await asyncio.sleep(outage.start - loop.time())
                self.outages.append(outage)
                if outage.kind is OutageKind.CUT:
                    self.cut()
                    continue
                self.stall(True)
                await asyncio.sleep(outage.duration)
                self.stall(False)
        finally:
            self.stall(False)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._open.wait()
        try:
            local = (self.source, 0) if self.source is not None else None
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port, local_addr=local)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        link = _Link(writer, up_writer)
        self._links.add(link)
        loop = asyncio.get_running_loop()
        link.tasks = [
            loop.create_task(self._pump(reader, up_writer, link)),
            loop.create_task(self._pump(up_reader, writer, link)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)
        for w in (writer, up_writer):
            w.transport.abort()
        for timer in link.timers:
            timer.cancel()
        link.timers.clear()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        shaper = LinkShaper(rng=self.rng)
        flight = _Flight()
        try:
            while True:
                data = await reader.read(16384)
                if not data:
                    break
                await self._open.wait()  # blackholed: data stalls here and goes nowhere
                if self.latency or self.jitter:
                    shaper.latency, shaper.jitter, shaper.rate = self.latency, self.jitter, self.rate
                    self._later(link, shaper.due(loop.time(), len(data)), writer, data, flight)
                    await flight.below(IN_FLIGHT_BYTES)
                    continue
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.rate:
                    await asyncio.sleep(len(data) / self.rate)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            for task in link.tasks:
                if task is not asyncio.current_task():
                    task.cancel()

    def _later(self, link: _Link, due: float, writer: asyncio.StreamWriter, data: bytes, flight: _Flight) -> None:
        flight.add(len(data))

        def deliver() -> None:
            link.timers.discard(handle)
            flight.add(-len(data))
            if writer.transport.is_closing():
                return
            if not self._open.is_set():  # dark path: in-flight data waits for it too
                link.held.append((writer, data))
                return
            writer.write(data)

        handle = asyncio.get_running_loop().call_at(due, deliver)
        link.timers.add(handle)

    async def close(self) -> None:
        await self.stop_outages()
        self._blackholed = False
        self._update()
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
