"""Firefox ESR participants: the bundled page in a headless Firefox driven over WebDriver BiDi.

Puppeteer talks to Firefox over a TCP port, which does not cross network namespaces, so the node
driver (tests/node/firefox_driver.mjs) runs inside the sandbox next to Firefox, and this module
talks to it with JSON lines over its stdin/stdout. A :class:`FirefoxParticipant` offers the same
``hook``/``wait_for``/``now``/``wait_video_from`` as the Chromium ``Participant`` of
tests/browser/conftest.py, so a test can mix both.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, PATIENCE_MS, Sandbox

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "tests" / "node" / "firefox_driver.mjs"
FIREFOX = Path("/usr/bin/firefox-esr")


@dataclass
class FirefoxDriver:
    process: asyncio.subprocess.Process
    version: str
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _waiting: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    page_errors: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    async def call(self, op: str, timeout: float = 60, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        self.process.stdin.write((json.dumps({"id": request_id, "op": op, **args}) + "\n").encode())
        await self.process.stdin.drain()
        try:
            async with asyncio.timeout(timeout):
                reply = await future
        finally:
            self._waiting.pop(request_id, None)
        if not reply.get("ok"):
            raise RuntimeError(f"firefox driver {op}: {reply.get('error')}")
        return reply

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            if message.get("event") == "pageerror":
                self.page_errors.append(f"page {message['page']}: {message['error']}")
            future = self._waiting.get(message.get("id", -1))
            if future is not None and not future.done():
                future.set_result(message)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(RuntimeError("the firefox driver exited"))

    async def open(self, name: str, url: str) -> FirefoxParticipant:
        reply = await self.call("open", url=url)
        return FirefoxParticipant(name, self, int(reply["page"]))

    async def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            with contextlib.suppress(ConnectionError, RuntimeError):
                self.process.stdin.write(b'{"op": "quit"}\n')
                self.process.stdin.close()
        try:
            async with asyncio.timeout(15):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            await self._reader


def _node_or_skip() -> str:
    node = shutil.which("node")
    if not FIREFOX.exists():
        pytest.skip(f"{FIREFOX} not installed")
    if node is None or not (REPO / "tests" / "node" / "node_modules" / "puppeteer-core").exists():
        pytest.skip("node or tests/node/node_modules missing (npm ci --prefix tests/node)")
    return node


async def start_firefox(sandbox: Sandbox) -> FirefoxDriver:
    node = _node_or_skip()
    log = ARTIFACTS / "logs" / "firefox-driver.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *sandbox.wrap([node, str(DRIVER)]), cwd=REPO / "tests" / "node",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(90):
            first = json.loads(await process.stdout.readline() or b"{}")
    except TimeoutError:
        first = {}
    if not first.get("ready"):
        process.kill()
        await process.wait()
        raise RuntimeError(f"firefox driver did not start: {first}; see {log}")
    driver = FirefoxDriver(process, str(first.get("version", "")))
    driver._reader = asyncio.get_running_loop().create_task(driver._read(), name="firefox-driver")
    return driver


@dataclass
class FirefoxParticipant:
    name: str
    driver: FirefoxDriver
    page: int

    async def evaluate(self, expression: str) -> Any:
        return (await self.driver.call("eval", page=self.page, expr=expression))["value"]

    async def hook(self, expression: str) -> Any:
        return await self.evaluate(f"window.switchboard.{expression}")

    async def wait_for(self, predicate: str, timeout_ms: int = PATIENCE_MS, what: str = "") -> None:
        check = f"(() => {{ const sb = window.switchboard; return !!(sb && ({predicate})); }})()"
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                while not await self.evaluate(check):
                    await asyncio.sleep(0.1)
        except TimeoutError:
            snapshot = await self.evaluate(
                "(() => { const sb = window.switchboard; return sb && {state: sb.state, badge: sb.badge,"
                " tiles: sb.tiles, errors: sb.errors, notice: sb.notice, frames: sb.frameStats,"
                " log: sb.stateLog.slice(-15)}; })()"
            )
            raise AssertionError(f"{self.name}: timed out waiting for {what or predicate}\npage: {snapshot}") from None

    async def now(self) -> float:
        return float(await self.evaluate("window.switchboard.now()"))

    async def wait_video_from(self, peer: str, seconds: float = 1.0) -> None:
        await self.wait_for(
            f"sb.frameStats[{peer!r}] && sb.frameStats[{peer!r}].videoWidth > 0 && sb.frameStats[{peer!r}].frames > 3",
            what=f"video from {peer}",
        )
        start = (await self.hook("frameStats"))[peer]["currentTime"]
        await self.wait_for(
            f"sb.frameStats[{peer!r}].currentTime > {start + seconds}",
            what=f"video from {peer} to advance {seconds}s",
        )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.driver.call("close", page=self.page, timeout=15)
