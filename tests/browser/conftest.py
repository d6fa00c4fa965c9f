"""Browser end-to-end tests: Debian Chromium driven by Playwright against a real server process.

Network rule of this machine: loopback only. When running as root with ``ip netns`` available, the
server and every Chromium live in a fresh network namespace that holds nothing but ``lo``
(created for the session, deleted at teardown). Chromium enters it through a generated wrapper
(``exec ip netns exec NS /usr/bin/chromium "$@"``): Playwright talks to the browser over pipes,
which cross namespaces. The tests reach the server's admin API through its unix socket, which
lives on the shared filesystem. Without root (or ``ip``) everything runs on plain loopback, and the
terminal summary says so.

All browser tests share one event loop (session scope) so that the Playwright driver, the server
and the admin client are started once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Playwright, async_playwright
from pytest_asyncio import is_async_test

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARTIFACTS = REPO / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")

#: Fake camera and microphone, permission prompts auto-accepted, host candidates on loopback.
CHROMIUM_FLAGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: Generous bound (ms) for "this must happen" waits inside the page; the per-test timeout
#: (120 s) bounds everything anyway.
PATIENCE_MS = 30_000
#: Server heartbeat used by the browser tests: short enough that pings flow during a test.
HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TIMEOUT = 6.0

_isolation: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every browser test runs on the session loop, next to the shared fixtures."""
    session_loop = pytest.mark.asyncio(loop_scope="session")
    for item in items:
        if item.path.is_relative_to(HERE) and is_async_test(item):
            # append=False: this marker must win over the one asyncio_mode=auto adds.
            item.add_marker(session_loop, append=False)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _isolation:
        terminalreporter.write_sep("-", "browser tests")
        for line in _isolation:
            terminalreporter.write_line(line)


# -- the network sandbox ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    """Where the server and the browsers run: a loopback-only netns, or plain loopback."""

    netns: str | None
    workdir: Path

    def wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def chromium_executable(self) -> Path:
        if self.netns is None:
            return CHROMIUM
        wrapper = self.workdir / "chromium-in-netns"
        if not wrapper.exists():
            wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {self.netns} {CHROMIUM} "$@"\n')
            wrapper.chmod(0o755)
        return wrapper


def _create_netns() -> tuple[str | None, str]:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None, "not running as root"
    if shutil.which("ip") is None:
        return None, "`ip` (iproute2) not found"
    name = f"sb-{secrets.token_hex(4)}"
    added = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10, check=False)
    if added.returncode != 0:
        return None, f"`ip netns add` failed: {added.stderr.strip()}"
    up = subprocess.run(
        ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
        capture_output=True, text=True, timeout=10, check=False,
    )
    if up.returncode != 0:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10, check=False)
        return None, f"bringing lo up failed: {up.stderr.strip()}"
    return name, ""


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed")
    workdir = tmp_path_factory.mktemp("browser")
    netns, why_not = _create_netns()
    if netns is not None:
        _isolation.append(f"isolation: network namespace {netns} (loopback only), deleted at teardown")
    else:
        _isolation.append(f"isolation: NONE - plain host loopback ({why_not})")
    try:
        yield Sandbox(netns, workdir)
    finally:
        if netns is not None:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=10, check=False)


# -- the server -------------------------------------------------------------------------------


@dataclass
class Server:
    base_url: str
    unix_path: Path
    admin_token: str
    log_path: Path
    http: aiohttp.ClientSession

    def url(self, **query: str) -> str:
        return f"{self.base_url}/?{urlencode(query)}"

    async def admin(self, method: str, path: str, *, expect: int = 200) -> Any:
        """Call the admin API over the unix socket (reachable from outside the netns)."""
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        async with self.http.request(method, f"http://switchboard{path}", headers=headers) as response:
            body = await response.json(content_type=None)
            assert response.status == expect, f"{method} {path}: {response.status} {body}"
            return body

    async def disconnect(self, session_id: str) -> None:
        """Drop one session's socket without ending the session: its client must resume."""
        await self.admin("POST", f"/admin/sessions/{session_id}/disconnect")

    async def kick(self, peer_id: str) -> None:
        await self.admin("POST", f"/admin/participants/{peer_id}/kick")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        return f"(no server log: {exc})"


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


async def _wait_ready(
    http: aiohttp.ClientSession, process: asyncio.subprocess.Process, log: Path, timeout: float
) -> None:
    """Poll ``/healthz`` over the unix socket until it answers; never a fixed sleep."""
    last_error: BaseException | None = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"server exited with {process.returncode}:\n{_read_log(log)}")
                try:
                    async with http.get("http://switchboard/healthz") as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, OSError) as exc:
                    last_error = exc
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise TimeoutError(f"server not ready after {timeout}s ({last_error!r}):\n{_read_log(log)}") from None


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (the server drains and exits), bounded; then SIGKILL. Always awaited."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(15):
                await process.wait()
        except TimeoutError:
            process.kill()
    await process.wait()


@contextlib.asynccontextmanager
async def _serve(sandbox: Sandbox, *, port: int, name: str, extra: list[str]) -> AsyncIterator[Server]:
    """A ``switchboard serve`` process in the sandbox, ready, stopped (drained) at exit."""
    unix_path = sandbox.workdir / f"{name}.sock"
    token = secrets.token_urlsafe(16)
    log_path = ARTIFACTS / "logs" / f"{name}.log"
    argv = sandbox.wrap([
        sys.executable, "-m", "signaling", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--unix", str(unix_path),
        "--admin-token", token,
        "--heartbeat-interval", str(HEARTBEAT_INTERVAL),
        "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT),
        "--drain-timeout", "2",
        *extra,
    ])
    with _open_log(log_path) as log:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=REPO, stdout=log, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
        )
    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(unix_path))) as http:
            await _wait_ready(http, process, log_path, timeout=60)
            yield Server(f"http://127.0.0.1:{port}", unix_path, token, log_path, http)
    finally:
        await _stop(process)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def app_server(sandbox: Sandbox) -> AsyncIterator[Server]:
    port = 8080 if sandbox.netns else _free_port()
    async with _serve(sandbox, port=port, name="browser-server", extra=[]) as server:
        yield server


#: Signing key of :func:`token_server` (kid ``k1``).
TOKEN_KEY = "browser-test-signing-key-0123456789abcdef"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def token_server(sandbox: Sandbox) -> AsyncIterator[Server]:
    """A server that requires access tokens (the README's production shape, on loopback)."""
    port = 8081 if sandbox.netns else _free_port()
    async with _serve(sandbox, port=port, name="browser-token-server", extra=["--token-key", f"k1:{TOKEN_KEY}"]) as server:
        yield server


# -- browsers ---------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as pw:
        yield pw


@dataclass
class Participant:
    """One browser with the page joined to a room; reads state through ``window.switchboard``."""

    name: str
    browser: Browser
    page: Page
    page_errors: list[str] = field(default_factory=list)

    async def hook(self, expression: str) -> Any:
        return await self.page.evaluate(f"() => window.switchboard.{expression}")

    async def wait_for(self, predicate: str, timeout_ms: int = PATIENCE_MS, what: str = "") -> None:
        """Wait until ``predicate`` (JS, ``sb`` = window.switchboard) holds in the page."""
        try:
            await self.page.wait_for_function(
                f"() => {{ const sb = window.switchboard; return !!(sb && ({predicate})); }}",
                timeout=timeout_ms,
            )
        except Exception as exc:
            snapshot = await self.page.evaluate(
                "() => { const sb = window.switchboard; return sb && {state: sb.state, badge: sb.badge,"
                " tiles: sb.tiles, calls: sb.calls, errors: sb.errors, notice: sb.notice,"
                " log: sb.stateLog.slice(-15)}; }"
            )
            raise AssertionError(f"{self.name}: timed out waiting for {what or predicate}\npage: {snapshot}") from exc

    async def now(self) -> float:
        return float(await self.page.evaluate("() => window.switchboard.now()"))

    async def remote_peers(self) -> list[str]:
        return sorted(t["peer"] for t in await self.hook("tiles"))

    async def wait_video_from(self, peer: str, seconds: float = 1.0) -> None:
        """Remote video of ``peer`` decodes: a size, and ``currentTime`` advancing by ``seconds``."""
        await self.wait_for(
            f"sb.frameStats[{peer!r}] && sb.frameStats[{peer!r}].videoWidth > 0 && sb.frameStats[{peer!r}].frames > 3",
            what=f"video from {peer}",
        )
        start = (await self.hook("frameStats"))[peer]["currentTime"]
        await self.wait_for(
            f"sb.frameStats[{peer!r}].currentTime > {start + seconds}",
            what=f"video from {peer} to advance {seconds}s",
        )


JoinFactory = Callable[..., Awaitable[Participant]]


@pytest_asyncio.fixture(loop_scope="session")
async def join(playwright: Playwright, sandbox: Sandbox, app_server: Server) -> AsyncIterator[JoinFactory]:
    """``await join(room, name, mode="p2p", ...)``: a fresh Chromium whose page joined ``room``."""
    started: list[Participant] = []

    async def factory(
        room: str,
        name: str,
        *,
        mode: str = "p2p",
        fake_ui: bool = True,
        viewport: dict[str, int] | None = None,
        wait_connected: bool = True,
        server: Server | None = None,
        extra_flags: list[str] | None = None,
        drop_flags: tuple[str, ...] = (),
        url: str | None = None,
        **query: str,
    ) -> Participant:
        """``url`` replaces the page address built from room/name/mode/query; ``server`` (default
        the dev-mode ``app_server``) serves the page; ``extra_flags``/``drop_flags`` adjust Chromium."""
        flags = CHROMIUM_FLAGS if fake_ui else [f for f in CHROMIUM_FLAGS if f != "--use-fake-ui-for-media-stream"]
        flags = [f for f in flags if f not in drop_flags] + list(extra_flags or [])
        browser = await playwright.chromium.launch(
            executable_path=str(sandbox.chromium_executable()), args=flags, timeout=60_000,
        )
        page = await browser.new_page(viewport=viewport or {"width": 1280, "height": 720})
        participant = Participant(name, browser, page)
        started.append(participant)
        page.on("pageerror", lambda error: participant.page_errors.append(str(error)))
        target = server or app_server
        await page.goto(url or target.url(room=room, name=name, autojoin="1", mode=mode, **query))
        if wait_connected:
            await participant.wait_for("sb.state === 'connected' && sb.peerId", what="joined")
        return participant

    yield factory
    errors = {p.name: p.page_errors for p in started if p.page_errors}
    for participant in started:
        with contextlib.suppress(Exception):
            await participant.browser.close()
    assert not errors, f"uncaught errors in pages: {errors}"


#: The longest a remote video may stall while signaling reconnects (ms). Media does not depend
#: on signaling at all, so anything beyond scheduling noise is a bug.
MAX_STALL_MS = 1000


async def assert_no_stall_since(watchers: list[tuple[Participant, str, float]]) -> None:
    """Each (participant, peer, mark): the peer's video never stalled over MAX_STALL_MS after
    ``mark`` (page clock)."""
    for who, peer, mark in watchers:
        stats = (await who.hook("frameStats"))[peer]
        stalls = [g for g in stats["longGaps"] if g["at"] > mark and g["ms"] > MAX_STALL_MS]
        assert not stalls, f"{who.name}: video of {peer} stalled: {stalls}"


def room_name(prefix: str) -> str:
    """A room of its own for every test (the server is shared)."""
    return f"{prefix}-{secrets.token_hex(3)}"


def screenshot_path(name: str) -> Path:
    directory = ARTIFACTS / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name
