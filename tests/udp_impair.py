"""A user-space UDP impairment relay for media (loss, bursts, delay, jitter, reordering, bandwidth).

:class:`ImpairedUdpRelay` stands in front of a UDP server — in the harness, a real coturn — like a
NAT on a bad last mile: clients send to its port, each client address gets its own upstream
socket (its mapping) and its own pair of impairment models (one per direction), and the
server's answers come back the same way. Clients that are told to use ``turn:`` at the relay's
port with ``iceTransportPolicy: "relay"`` put every media packet (and their ICE, DTLS, TURN
refreshes) through it, without rewriting any SDP.

The decisions are :class:`tests.netem.DatagramImpairment`'s (pure, seeded); this module only
owns sockets and timers. Every queue has a bound: a direction holds at most
``Impairment.queue`` datagrams, the relay at most ``max_flows`` mappings. ``close()`` cancels
every timer and closes every socket.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, cast

from tests.netem import DatagramImpairment, Impairment, ImpairmentStats

Address = tuple[str, int]


class Direction:
    """One direction of a flow: asks its model, then sends each datagram when it is due."""

    def __init__(self, impairment: Impairment, rng: random.Random) -> None:
        self.model = DatagramImpairment(impairment, rng)
        self._timers: set[asyncio.TimerHandle] = set()

    def set_impairment(self, impairment: Impairment) -> None:
        self.model.impairment = impairment

    def send(self, data: bytes, send: Callable[[bytes], None]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = self.model.admit(now, len(data), len(self._timers))
        if due is None:
            return
        if due <= now:
            send(data)
            return

        def deliver() -> None:
            self._timers.discard(handle)
            send(data)

        handle = loop.call_at(due, deliver)
        self._timers.add(handle)

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Any], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable and the like: UDP shrugs
        pass

    def send(self, data: bytes, addr: Address | None = None) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)


class _Flow:
    """One client's mapping: its models at once, its upstream socket as soon as it is open."""

    #: Datagrams due upstream before the socket is open (the first few of a flow).
    BACKLOG = 256

    def __init__(self, client: Address, up: Direction, down: Direction) -> None:
        self.client = client
        self.up = up
        self.down = down
        self.upstream: _Endpoint | None = None
        self.backlog: list[bytes] = []

    def to_server(self, data: bytes) -> None:
        if self.upstream is not None:
            self.upstream.send(data)
        elif len(self.backlog) < self.BACKLOG:
            self.backlog.append(data)

    def opened(self, upstream: _Endpoint) -> None:
        self.upstream = upstream
        backlog, self.backlog = self.backlog, []
        for data in backlog:
            upstream.send(data)

    def close(self) -> None:
        self.up.close()
        self.down.close()
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()


class ImpairedUdpRelay:
    """Impairs every flow between clients and one UDP server on 127.0.0.1."""

    def __init__(
        self, upstream: Address, *, up: Impairment, down: Impairment, seed: int = 0, max_flows: int = 256
    ) -> None:
        self.upstream = upstream
        self.up = up
        self.down = down
        self.seed = seed
        self.max_flows = max_flows
        self.refused = 0
        self._face = _Endpoint(self._from_client)
        self._flows: dict[Address, _Flow] = {}
        self._opening: set[asyncio.Task[None]] = set()
        #: Failures to open an upstream socket (a test asserts this stays empty).
        self.errors: list[BaseException] = []

    async def start(self) -> ImpairedUdpRelay:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self._face, local_addr=("127.0.0.1", 0))
        return self

    @property
    def port(self) -> int:
        assert self._face.transport is not None, "start() first"
        port: int = self._face.transport.get_extra_info("sockname")[1]
        return port

    def set_impairment(self, *, up: Impairment, down: Impairment) -> None:
        """Change both directions of every flow, present and future (the models keep their state)."""
        self.up, self.down = up, down
        for flow in self._flows.values():
            flow.up.set_impairment(up)
            flow.down.set_impairment(down)

    def stats(self) -> tuple[ImpairmentStats, ImpairmentStats]:
        """Sums over every flow: (client → server, server → client)."""
        totals = (ImpairmentStats(), ImpairmentStats())
        for flow in self._flows.values():
            for total, direction in zip(totals, (flow.up, flow.down), strict=True):
                s = direction.model.stats
                total.seen += s.seen
                total.lost += s.lost
                total.burst_lost += s.burst_lost
                total.overflow += s.overflow
                total.reordered += s.reordered
        return totals

    def _from_client(self, data: bytes, addr: Any) -> None:
        client: Address = (addr[0], addr[1])
        flow = self._flows.get(client)
        if flow is None:
            if len(self._flows) >= self.max_flows:
                self.refused += 1
                return
            rng = random.Random(self.seed * 100_003 + len(self._flows))
            flow = _Flow(client, Direction(self.up, random.Random(rng.random())), Direction(self.down, random.Random(rng.random())))
            self._flows[client] = flow
            task = asyncio.get_running_loop().create_task(self._open(flow))
            self._opening.add(task)
            task.add_done_callback(self._opened)
        flow.up.send(data, flow.to_server)

    async def _open(self, flow: _Flow) -> None:
        client = flow.client
        endpoint = _Endpoint(lambda data, _addr: flow.down.send(data, lambda d: self._face.send(d, client)))
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: endpoint, local_addr=("127.0.0.1", 0), remote_addr=self.upstream)
        flow.opened(endpoint)

    def _opened(self, task: asyncio.Task[None]) -> None:
        self._opening.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(cast(BaseException, task.exception()))

    def close(self) -> None:
        for task in self._opening:
            task.cancel()
        for flow in self._flows.values():
            flow.close()
        self._flows.clear()
        if self._face.transport is not None:
            self._face.transport.close()

