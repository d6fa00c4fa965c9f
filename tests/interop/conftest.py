"""Interop tests: the SFU with WebRTC stacks we did not write.

They share the browser tests' sandbox (a loopback-only network namespace when running as root),
server process and Chromium (see tests/browser/conftest.py). Third-party clients that cannot
speak WebSocket themselves (GStreamer webrtcbin, node ``@roamhq/wrtc``, an aiortc peer) run as
subprocesses inside the sandbox with signaling bridged through this process
(:mod:`tests.interop.endpoints`); Firefox runs under a node puppeteer driver
(:mod:`tests.interop.firefox`).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from pytest_asyncio import is_async_test

from tests.browser.conftest import (
    ARTIFACTS,
    Sandbox,
    Server,
    app_server,
    join,
    playwright,
    sandbox,
)
from tests.interop.endpoints import MediaProcess, start_media_process
from tests.interop.firefox import FirefoxDriver, start_firefox

#: The browser tests' fixtures, shared (a second sandbox and server when both folders run).
__all__ = ["app_server", "join", "playwright", "sandbox"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEBIAN_PYTHON = Path("/usr/bin/python3")
NODE_MODULES = REPO / "tests" / "node" / "node_modules"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every interop test runs on the session loop, next to the shared fixtures."""
    session_loop = pytest.mark.asyncio(loop_scope="session")
    for item in items:
        if item.path.is_relative_to(HERE) and is_async_test(item):
            item.add_marker(session_loop, append=False)


def _gst_available() -> str | None:
    if not DEBIAN_PYTHON.exists():
        return f"{DEBIAN_PYTHON} not found"
    import subprocess

    probe = subprocess.run(
        [str(DEBIAN_PYTHON), "-c", "import gi; gi.require_version('GstWebRTC', '1.0');"
         "from gi.repository import Gst; Gst.init(None);"
         "assert Gst.ElementFactory.find('webrtcbin') and Gst.ElementFactory.find('vp8enc')"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    return None if probe.returncode == 0 else f"GStreamer webrtcbin unusable: {probe.stderr.strip()[-300:]}"


MediaFactory = Callable[..., Awaitable[MediaProcess]]


@pytest_asyncio.fixture(loop_scope="session")
async def media_clients(sandbox: Sandbox, app_server: Server) -> AsyncIterator[MediaFactory]:
    """``await media_clients(kind, room, name, *flags)``: a subprocess client joined to ``room``.

    ``kind``: ``gst`` (webrtcbin), ``wrtc`` (node + @roamhq/wrtc) or ``aiortc``.
    """
    started: list[MediaProcess] = []
    checked: dict[str, str | None] = {}

    async def factory(kind: str, room: str, name: str, *flags: str, codecs: list[str] | None = None) -> MediaProcess:
        if kind == "gst":
            if "gst" not in checked:
                checked["gst"] = _gst_available()
            if checked["gst"]:
                pytest.skip(checked["gst"])
            argv = [str(DEBIAN_PYTHON), str(HERE / "gst_client.py"), *flags]
        elif kind == "wrtc":
            node = shutil.which("node")
            if node is None or not (NODE_MODULES / "@roamhq" / "wrtc").exists():
                pytest.skip("node or tests/node/node_modules missing (npm ci --prefix tests/node)")
            argv = [node, str(REPO / "tests" / "node" / "wrtc_client.mjs"), *flags]
        elif kind == "aiortc":
            argv = [sys.executable, str(HERE / "aiortc_client.py"), *flags]
        else:
            raise ValueError(kind)
        client = await start_media_process(
            sandbox.wrap(argv), unix_path=app_server.unix_path, room=room, name=name,
            log_path=ARTIFACTS / "logs" / "interop" / f"{room}-{name}.log", http=app_server.http,
            codecs=codecs,
        )
        started.append(client)
        return client

    yield factory
    for client in started:
        with contextlib.suppress(Exception):
            await client.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def firefox_driver(sandbox: Sandbox) -> AsyncIterator[FirefoxDriver]:
    """One headless Firefox ESR (pages are participants), driven over WebDriver BiDi."""
    driver = await start_firefox(sandbox)
    try:
        yield driver
    finally:
        await driver.close()
