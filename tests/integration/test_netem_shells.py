"""The I/O shells of the impairment harness on loopback: the UDP relay and the fault proxy's outages.

The decisions themselves (which datagram is lost, when a chunk is due, when the next outage
comes) are unit-tested in tests/unit/test_netem.py; here real sockets check that the shells do
what the models decide, and own everything they start.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from tests.conftest import PATIENCE, UNIT, eventually
from tests.faultproxy import FaultProxy
from tests.netem import GilbertElliott, Impairment, OutageConfig, OutageKind
from tests.udp_impair import ImpairedUdpRelay


class _Echo(asyncio.DatagramProtocol):
    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)
        if self.echo:
            assert self.transport is not None
            self.transport.sendto(data, addr)


async def _udp(protocol: _Echo, remote: tuple[str, int] | None = None) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: protocol, local_addr=None if remote else ("127.0.0.1", 0), remote_addr=remote
    )
    return transport


@pytest.fixture
async def echo() -> AsyncIterator[tuple[_Echo, int]]:
    server = _Echo()
    transport = await _udp(server)
    yield server, transport.get_extra_info("sockname")[1]
    transport.close()


async def test_udp_relay_delivers_exactly_what_the_model_admits(echo: tuple[_Echo, int]) -> None:
    server, port = echo
    lossy = Impairment(loss=0.1, bursts=GilbertElliott.bursts(0.05, 3), delay=UNIT / 5, jitter=UNIT / 10, reorder=0.05, reorder_by=UNIT / 10)
    relay = await ImpairedUdpRelay(("127.0.0.1", port), up=lossy, down=Impairment(), seed=3).start()
    clients = [_Echo(echo=False), _Echo(echo=False)]  # two clients: two flows, each with its own mapping and models
    transports = [await _udp(c, ("127.0.0.1", relay.port)) for c in clients]
    try:
        for n in range(300):
            for transport in transports:
                transport.sendto(n.to_bytes(2, "big"))
            if n % 20 == 19:  # a few at a time: a socket's receive buffer holds ~250 small datagrams
                await eventually(lambda n=n: relay.stats()[0].seen == 2 * (n + 1), what="a batch seen")
        await eventually(lambda: relay.stats()[0].seen == 600, what="every datagram seen")
        up, _ = relay.stats()
        await eventually(lambda: len(server.received) == 600 - up.dropped, what="the admitted ones upstream")
        await eventually(lambda: sum(len(c.received) for c in clients) == 600 - up.dropped, what="echoed back")
        assert 0 < up.dropped < 200 and up.burst_lost > 0 and up.lost > 0 and up.reordered > 0
        for client in clients:
            numbers = [int.from_bytes(d, "big") for d in client.received]
            assert len(set(numbers)) == len(numbers)  # nothing duplicated, each flow answered to its own client
        assert relay.errors == [] and relay.refused == 0
    finally:
        for transport in transports:
            transport.close()
        relay.close()


async def test_udp_relay_bounds_its_flows(echo: tuple[_Echo, int]) -> None:
    server, port = echo
    relay = await ImpairedUdpRelay(("127.0.0.1", port), up=Impairment(), down=Impairment(), max_flows=1).start()
    clients = [_Echo(echo=False), _Echo(echo=False)]
    transports = [await _udp(c, ("127.0.0.1", relay.port)) for c in clients]
    try:
        transports[0].sendto(b"a")
        await eventually(lambda: clients[0].received == [b"a"])
        transports[1].sendto(b"b")
        await eventually(lambda: relay.refused == 1)
        assert server.received == [b"a"]
    finally:
        for transport in transports:
            transport.close()
        relay.close()


async def _echo_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def tcp_echo() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo_tcp, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_a_stall_holds_bytes_in_flight_and_releases_them_in_order(tcp_echo: int) -> None:
    proxy = await FaultProxy(tcp_echo).start()
    proxy.latency, proxy.jitter, proxy.rate = 2 * UNIT, UNIT, 200_000
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        payload = bytes(range(256)) * 400  # 100 KB: half a second of wire at 200 KB/s
        writer.write(payload)
        proxy.stall(True)  # part of it is already on its way; it waits too
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 6 * UNIT)
        proxy.stall(False)
        async with asyncio.timeout(PATIENCE):
            echoed = await reader.readexactly(len(payload))
        assert echoed == payload
        writer.close()
    finally:
        await proxy.close()


async def _until_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        writer.write(b"x")
        await writer.drain()
        if not await reader.read(1):
            raise ConnectionResetError


async def test_random_outages_stall_and_cut(tcp_echo: int) -> None:
    proxy = await FaultProxy(tcp_echo).start()
    try:
        proxy.start_outages(OutageConfig(every=2 * UNIT, shortest=UNIT, longest=2 * UNIT, cuts=0.5), random.Random(4))
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        await eventually(lambda: proxy.active == 1)
        kinds = lambda: {o.kind for o in proxy.outages}  # noqa: E731
        await eventually(lambda: kinds() == {OutageKind.STALL, OutageKind.CUT}, what="a stall and a cut")
        # The cut reset our connection.
        async with asyncio.timeout(PATIENCE):
            with pytest.raises(ConnectionError):
                await _until_reset(reader, writer)
        await proxy.stop_outages()
        # Once stopped, the path is open again.
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"ping")
        async with asyncio.timeout(PATIENCE):
            assert await reader.readexactly(4) == b"ping"
        writer.close()
    finally:
        await proxy.close()
