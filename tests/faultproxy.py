"""A small TCP fault proxy for tests: cut (RST), blackhole (half-open), delay, throttle, latency.

Listens on 127.0.0.1 only and forwards to a loopback upstream. Every connection's pump tasks
are owned by the proxy and cancelled by ``close()``; nothing outlives a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: Chunks on their way under ``latency`` (one timer each), cancelled with the link.
    timers: set[asyncio.TimerHandle] = field(default_factory=set)

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
        self.delay = 0.0
        #: Bytes per second per direction; 0 = unlimited.
        self.rate = 0
        #: One-way latency of each direction (seconds), plus a uniform random +-``jitter`` per
        #: chunk. Unlike ``delay`` it does not hold the pump: chunks are in flight concurrently,
        #: and delivered in order (a late chunk holds back the ones behind it, as on TCP).
        self.latency = 0.0
        self.jitter = 0.0
        self.rng = random.Random(0)
        self.connections = 0

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
        if on:
            self._open.clear()
        else:
            self._open.set()

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
        last_due = 0.0
        try:
            while True:
                data = await reader.read(16384)
                if not data:
                    break
                await self._open.wait()  # blackholed: data stalls here and goes nowhere
                if self.latency or self.jitter:
                    spread = self.rng.uniform(-self.jitter, self.jitter)
                    # Strictly later than the chunk before: timers due at the same instant may
                    # run in any order, and TCP must not reorder bytes.
                    last_due = max(last_due + 1e-6, loop.time() + max(0.0, self.latency + spread))
                    self._later(link, last_due, writer, data)
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

    @staticmethod
    def _later(link: _Link, due: float, writer: asyncio.StreamWriter, data: bytes) -> None:
        def deliver() -> None:
            link.timers.discard(handle)
            if not writer.transport.is_closing():
                writer.write(data)

        handle = asyncio.get_running_loop().call_at(due, deliver)
        link.timers.add(handle)

    async def close(self) -> None:
        self._open.set()
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
