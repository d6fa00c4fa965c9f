"""The shipped nginx configuration (deploy/nginx/switchboard.conf), run by a real nginx.

nginx terminates TLS (a self-signed certificate) on a loopback port and forwards /ws to a node
that trusts it (``security.trusted_proxies``). Every address involved is a distinct loopback
address, so "who is the client" is observable: nginx and the node are on 127.0.0.1, clients
connect from 127.0.0.5, 127.0.0.6…
"""

from __future__ import annotations

import asyncio
import os
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest

from signaling.client import Client, Resumed, SignalReceived
from signaling.core.backoff import Backoff
from tests.conftest import (
    PATIENCE,
    UNIT,
    UNLIMITED,
    ServerFactory,
    eventually,
    free_port,
    make_config,
)
from tests.faultproxy import FaultProxy
from tests.integration.test_tls import self_signed

NGINX = "/usr/sbin/nginx"
SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "switchboard.conf"

pytestmark = pytest.mark.skipif(not os.access(NGINX, os.X_OK), reason="nginx is not installed")


@dataclass
class Nginx:
    port: int
    trust: ssl.SSLContext

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/ws"


def render(shipped: str, *, upstream: int, port: int, cert: Path, key: Path) -> str:
    """The shipped file with its ADAPT lines pointed at the test's ports and certificate."""
    swaps = {
        "server 127.0.0.1:8080;": f"server 127.0.0.1:{upstream};",
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "/etc/ssl/switchboard/fullchain.pem": str(cert),
        "/etc/ssl/switchboard/privkey.pem": str(key),
    }
    for old, new in swaps.items():
        assert shipped.count(old) == 1, f"deploy/nginx/switchboard.conf no longer has {old!r}"
        shipped = shipped.replace(old, new)
    return shipped


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


@pytest.fixture
async def start_nginx(tmp_path: Path) -> AsyncIterator[Callable[[int], Awaitable[Nginx]]]:
    procs: list[asyncio.subprocess.Process] = []

    async def start(upstream: int) -> Nginx:
        prefix = tmp_path / f"nginx{len(procs)}"
        prefix.mkdir()
        cert, key = self_signed(prefix)
        port = free_port()
        (prefix / "switchboard.conf").write_text(
            render(SHIPPED.read_text(), upstream=upstream, port=port, cert=cert, key=key)
        )
        temp = "\n".join(f"    {kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        # Workers run as an unprivileged user when nginx starts as root; the test's files are
        # private to root, so the workers stay root here.
        user = "user root;\n" if os.geteuid() == 0 else ""
        (prefix / "nginx.conf").write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\n"
            f"error_log {prefix / 'error.log'} warn;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n    access_log off;\n{temp}\n    include {prefix / 'switchboard.conf'};\n}}\n"
        )
        proc = await asyncio.create_subprocess_exec(
            NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        procs.append(proc)
        async with asyncio.timeout(PATIENCE):
            while not await _port_open(port):
                assert proc.returncode is None, (prefix / "error.log").read_text()
                await asyncio.sleep(UNIT / 5)
        return Nginx(port, ssl.create_default_context(cafile=str(cert)))

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
        try:
            async with asyncio.timeout(PATIENCE):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


def session_from(source: str, trust: ssl.SSLContext) -> aiohttp.ClientSession:
    """HTTP session whose connections come from the loopback address ``source``."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust, local_addr=(source, 0)))


def fast_backoff(seed: int) -> Backoff:
    return Backoff(base=UNIT / 10, cap=UNIT, stable_after=10 * UNIT, rng=random.Random(seed))


async def next_signal(client: Client, into: list[SignalReceived], resumed: list[Resumed]) -> SignalReceived:
    async for event in client:
        if isinstance(event, Resumed):
            resumed.append(event)
        if isinstance(event, SignalReceived):
            into.append(event)
            return event
    raise AssertionError("client closed")


async def test_join_relay_and_resume_after_a_cut_before_nginx(
    start_server: ServerFactory, start_nginx: Callable[[int], Awaitable[Nginx]]
) -> None:
    server = await start_server(make_config(security=replace(UNLIMITED, trusted_proxies=("127.0.0.1/32",))))
    nginx = await start_nginx(server.runner.addresses[0][1])
    # The cut happens between the client and nginx; nginx-to-node stays up until nginx notices.
    proxy = await FaultProxy(nginx.port, source="127.0.0.5").start()
    url = f"wss://127.0.0.1:{proxy.port}/ws"
    async with session_from("127.0.0.5", nginx.trust) as http_a, session_from("127.0.0.6", nginx.trust) as http_b:
        alice = Client(url, "room", name="alice", backoff=fast_backoff(1), session=http_a)
        bob = Client(nginx.url, "room", name="bob", backoff=fast_backoff(2), session=http_b)
        try:
            await alice.connect()
            await bob.connect()
            assert alice.peer_id and bob.peer_id
            got: list[SignalReceived] = []
            resumed: list[Resumed] = []
            await alice.signal(bob.peer_id, {"n": 1})
            async with asyncio.timeout(PATIENCE):
                assert (await next_signal(bob, got, resumed)).data == {"n": 1}
            assert proxy.cut() == 1
            await alice.signal(bob.peer_id, {"n": 2})
            await bob.signal(alice.peer_id, {"n": 3})
            mine: list[SignalReceived] = []
            async with asyncio.timeout(PATIENCE):
                assert (await next_signal(bob, got, resumed)).data == {"n": 2}
                assert (await next_signal(alice, mine, resumed)).data == {"n": 3}
            # Alice came back on a new connection through nginx and resumed her session.
            assert proxy.connections == 2
            await eventually(lambda: alice.peer_id is not None)
        finally:
            await alice.close()
            await bob.close()
            await proxy.close()


async def _ws(http: aiohttp.ClientSession, url: str, forged: str | None = None) -> aiohttp.ClientWebSocketResponse | int:
    """An open WebSocket, or the HTTP status that refused it."""
    headers = {"X-Forwarded-For": forged} if forged is not None else None
    try:
        return await http.ws_connect(url, headers=headers, autoping=True)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status


async def test_per_address_limit_applies_to_the_forwarded_address_and_forgeries_are_ignored(
    start_server: ServerFactory, start_nginx: Callable[[int], Awaitable[Nginx]]
) -> None:
    security = replace(UNLIMITED, max_connections_per_ip=2, trusted_proxies=("127.0.0.1/32",))
    server = await start_server(make_config(security=security))
    nginx = await start_nginx(server.runner.addresses[0][1])
    plain = ssl.create_default_context()
    opened: list[aiohttp.ClientWebSocketResponse] = []

    async def open_ws(http: aiohttp.ClientSession, url: str, forged: str | None = None) -> int:
        result = await _ws(http, url, forged)
        if isinstance(result, int):
            return result
        opened.append(result)
        return 101

    async with (
        session_from("127.0.0.5", nginx.trust) as five,
        session_from("127.0.0.6", nginx.trust) as six,
        session_from("127.0.0.7", plain) as seven,
    ):
        try:
            # Through nginx: two from .5, then .5 is refused while .6 still gets in, although
            # every one of these reaches the node from nginx's single address. Each forged
            # header names another address: believed, it would give .5 a fresh allowance.
            assert [await open_ws(five, nginx.url, f"198.51.100.{i}") for i in range(3)] == [101, 101, 429]
            assert await open_ws(six, nginx.url) == 101
            assert await open_ws(six, nginx.url, "127.0.0.5") == 101
            # Straight to the node from an untrusted address: its header is ignored entirely.
            direct = server.url
            assert [await open_ws(seven, direct, f"203.0.113.{i}") for i in range(3)] == [101, 101, 429]
            # Closing one frees a place for that client, and only for it.
            await opened[0].close()
            async with asyncio.timeout(PATIENCE):
                while (status := await open_ws(five, nginx.url)) != 101:
                    assert status == 429
                    await asyncio.sleep(UNIT)
        finally:
            for ws in opened:
                await ws.close()


def test_shipped_timeouts_cover_three_heartbeat_intervals() -> None:
    # settings.validate bounds heartbeat.interval to 30 s.
    text = SHIPPED.read_text()
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        line = next(line for line in text.splitlines() if line.strip().startswith(directive))
        seconds = int(line.split()[1].rstrip(";").removesuffix("s"))
        assert seconds >= 3 * 30, f"{directive} must be at least 3 x the largest heartbeat.interval (30 s)"
    assert "proxy_buffering off;" in text
