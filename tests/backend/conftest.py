"""A real redis-server on a free loopback port, and helpers to wait on conditions.

The session-wide server is shared by every test of this package; each test isolates itself with a
fresh key prefix. Tests that kill Redis get their own server from ``redis_factory``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from signaling.backend import Backend, MemoryBackend
from signaling.cluster.redis_backend import RedisBackend
from signaling.cluster.registry import NodeRegistry

# Re-exported: the backend tests import the timing names from here.
from tests.support.timing import PATIENCE as PATIENCE
from tests.support.timing import UNIT as UNIT


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process: no persistence, loopback only; can be killed and restarted."""

    def __init__(self, executable: str, port: int) -> None:
        self.executable = executable
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, ready_within: float = 30.0) -> None:
        assert self.proc is None, "running already"
        self.proc = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + ready_within
        while not _pong(self.port):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                self.proc = None
                raise RuntimeError(f"redis-server exited at start on port {self.port}: {err}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} not answering after {ready_within} s")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is saved (nothing would be anyway)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            if proc.stderr:
                proc.stderr.close()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


def _redis_executable() -> str:
    exe = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if exe is None:
        pytest.fail("redis-server is not installed: `apt-get install redis-server` (the Redis backend tests need a real one)")
    return exe


def launch_redis() -> RedisServer:
    exe = _redis_executable()
    last: Exception | None = None
    for _ in range(5):  # a free port can be taken between probing and binding: try another
        server = RedisServer(exe, _free_port())
        try:
            server.start()
        except RuntimeError as exc:
            last = exc
            continue
        return server
    pytest.fail(f"could not start redis-server: {last}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = launch_redis()
    yield server
    server.stop()


@pytest.fixture
def redis_factory() -> Iterator[Callable[[], RedisServer]]:
    """Private redis-servers for tests that kill them; all stopped at teardown."""
    started: list[RedisServer] = []

    def make() -> RedisServer:
        server = launch_redis()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}:"


def fast_backend(url: str, prefix: str, **overrides: Any) -> RedisBackend:
    """A RedisBackend with timings in test units (dead after ~1 s, reconnect within ~0.5 s)."""
    options: dict[str, Any] = {
        "key_prefix": prefix,
        "op_timeout": 20 * UNIT,
        "block": 2 * UNIT,
        "alive_interval": 4 * UNIT,
        "alive_ttl": 16 * UNIT,
        "start_timeout": 100 * UNIT,
    }
    options.update(overrides)
    return RedisBackend(url, **options)


@pytest.fixture
async def redis_backends() -> AsyncIterator[Callable[..., RedisBackend]]:
    """Build RedisBackends (``fast_backend`` arguments); every one is closed at teardown."""
    made: list[RedisBackend] = []

    def make(url: str, prefix: str, **overrides: Any) -> RedisBackend:
        backend = fast_backend(url, prefix, **overrides)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


@pytest.fixture
async def registries() -> AsyncIterator[Callable[..., NodeRegistry]]:
    made: list[NodeRegistry] = []

    def make(url: str, prefix: str, **overrides: Any) -> NodeRegistry:
        options: dict[str, Any] = {"key_prefix": prefix, "heartbeat_interval": 4 * UNIT, "ttl": 12 * UNIT, "op_timeout": 20 * UNIT}
        options.update(overrides)
        registry = NodeRegistry(url, **options)
        made.append(registry)
        return registry

    yield make
    for registry in made:
        await registry.close()


@pytest.fixture(params=["memory", "redis"])
def backend(
    request: pytest.FixtureRequest, redis_server: RedisServer, prefix: str, redis_backends: Callable[..., RedisBackend]
) -> Backend:
    """One backend, not started yet: contract tests run once per implementation."""
    if request.param == "memory":
        return MemoryBackend()
    return redis_backends(redis_server.url, prefix)


async def wait_for(
    condition: Callable[[], Any], *, timeout: float = PATIENCE, what: str = "condition"
) -> None:
    """Poll ``condition`` (sync or async) until it is truthy; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout:.1f} s waiting for {what}")
        await asyncio.sleep(UNIT / 5)


class Inbox:
    """A ``deliver`` callback that records what a node received, per peer, with a wake-up."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()

    async def __call__(self, peer_id: str, message: dict[str, Any], source: str = "") -> None:
        self.got.append((peer_id, message))
        self._changed.set()

    def of(self, peer_id: str) -> list[dict[str, Any]]:
        return [m for p, m in self.got if p == peer_id]

    async def until(self, predicate: Callable[[], bool], *, timeout: float = PATIENCE, what: str = "messages") -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
                return
        pytest.fail(f"timed out after {timeout:.1f} s waiting for {what}; got {len(self.got)} messages")

