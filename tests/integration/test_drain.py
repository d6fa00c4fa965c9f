"""Shutdown: SIGTERM drains (reconnect + 1001, exit 0); kill -9 loses memory sessions (rejoin)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from signaling.client import Client, Rejoined
from signaling.core.backoff import Backoff
from signaling.core.config import LimitsConfig
from tests.conftest import PATIENCE, UNIT, ServerFactory, free_port, make_config
from tests.faultproxy import FaultProxy
from tests.raw import Raw


class Node:
    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Node:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "signaling", "serve", "--host", "127.0.0.1", "--port", str(self.port),
            "--drain-timeout", str(100 * UNIT), "--log-level", "warning",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(PATIENCE * 2):
            line = b""
            while b"listening" not in line:  # the dev-mode warning may come first
                line = await self.proc.stdout.readline()
                assert line, "server exited before listening"
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def wait(self) -> int:
        assert self.proc is not None
        async with asyncio.timeout(PATIENCE):
            return await self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.kill()
        if node.proc is not None:
            await node.proc.wait()


async def test_sigterm_drains_and_exits_zero(nodes: list[Node]) -> None:
    node = await Node(free_port()).start()
    nodes.append(node)
    raw = await Raw.joined(node.url, "room", "a")
    assert node.proc is not None
    node.proc.send_signal(signal.SIGTERM)
    reconnect = await raw.expect("reconnect")
    assert reconnect["mode"] == "resume"
    assert reconnect["seq"] == 2
    assert await raw.closed() == 1001
    assert await node.wait() == 0
    await raw.close()


async def test_kill9_then_restart_clients_rejoin(nodes: list[Node]) -> None:
    port = free_port()
    node = await Node(port).start()
    nodes.append(node)
    client = Client(node.url, "room", backoff=Backoff(base=UNIT, cap=4 * UNIT))
    await client.connect()
    old = client.peer_id
    assert node.proc is not None
    os.kill(node.proc.pid, signal.SIGKILL)
    await node.wait()
    nodes.append(await Node(port).start())
    async with asyncio.timeout(PATIENCE * 2):
        async for event in client:
            if isinstance(event, Rejoined):
                break
    assert client.peer_id != old
    await client.close()


async def test_readyz_false_while_draining_and_new_connections_refused(start_server: ServerFactory) -> None:
    server = await start_server(make_config(limits=LimitsConfig(close_timeout=40 * UNIT)))
    proxy = await FaultProxy(server.runner.addresses[0][1]).start()
    stuck = await Raw.joined(proxy.url, "room", "stuck")
    proxy.blackhole(True)  # its close handshake cannot complete; the close deadline still ends it
    drain = asyncio.create_task(server.hub.drain(100 * UNIT))
    async with aiohttp.ClientSession() as http:
        async with http.get(server.http_url + "/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["draining"] is True
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(server.url)
        assert info.value.status == 503
    async with asyncio.timeout(PATIENCE):
        await drain  # ends once the close deadline aborted the stuck socket
    assert server.hub.connection_count == 0
    await proxy.close()
    await stuck.close()
