"""Fixtures of the WHIP/WHEP and recording tests: a loopback-only network namespace for the
test's thread, a real server with its SFU inside it, and node clients (`whip-whep` on
`@roamhq/wrtc`) started from it.

Why a namespace: libwebrtc (the node clients) gathers host candidates on every interface
except loopback, unless loopback is all there is. Network namespaces are per thread on Linux,
so the test's thread enters a fresh namespace holding only ``lo`` for the duration of the test:
the server's sockets, the aiortc peers' sockets and the node child processes (forked from this
thread) all live there, and nothing can leave the machine. Without root (no namespace), the
tests that need node are skipped; the recording tests run on plain loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sfu import aiortc_hooks
from signaling.runtime.aio import cancel_and_wait
from tests.conftest import PATIENCE, UNIT
from tests.media.peers import LOOPBACK

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "tests" / "node"
DRIVER = NODE_DIR / "whip_client.mjs"
_CLONE_NEWNET = 0x40000000


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    aiortc_hooks.set_process_host_addresses((LOOPBACK,))
    yield
    aiortc_hooks.set_process_host_addresses(None)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def enter_netns(name: str) -> Iterator[None]:
    """Move the calling thread into the existing namespace ``name``; restore on exit."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(original)
    finally:
        os.close(target)
        os.close(original)


@contextlib.contextmanager
def thread_in_netns() -> Iterator[str]:
    """Move the calling thread into a fresh loopback-only namespace; restore on exit."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("a network namespace needs root and iproute2")
    name = f"sbw-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True, capture_output=True, timeout=10)
        with enter_netns(name):
            yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10, check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    with thread_in_netns() as name:
        yield name


def node_available() -> bool:
    return shutil.which("node") is not None and (NODE_DIR / "node_modules" / "whip-whep").is_dir()


class NodeClient:
    """One ``whip_client.mjs`` process: its JSON events, and commands on stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.stderr = b""

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue
            self._changed.set()
        self._changed.set()

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    async def wait(self, predicate: Any, what: str, timeout: float = PATIENCE) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for event in self.events:
                        if predicate(event):
                            return event
                    if self._reader.done():
                        raise AssertionError(f"node exited before {what}: {self.events} {await self._stderr()}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {timeout}s: {self.events[-10:]}") from None

    async def _stderr(self) -> str:
        if self.process.stderr is None:
            return ""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(UNIT * 20):
                self.stderr = await self.process.stderr.read()
        return self.stderr.decode(errors="replace")[-2000:]

    async def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        await cancel_and_wait(self._reader)


@pytest.fixture
async def node_clients() -> AsyncIterator[Any]:
    if not node_available():
        pytest.skip("node or tests/node/node_modules missing (npm ci --prefix tests/node)")
    started: list[NodeClient] = []

    async def start(mode: str, url: str, token: str | None = None) -> NodeClient:
        argv = ["node", str(DRIVER), mode, url, *([token] if token else [])]
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=NODE_DIR, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        client = NodeClient(process)
        started.append(client)
        return client

    yield start
    for client in started:
        await client.close()
