"""Real node processes for cluster tests: ``python -m signaling <args>``, one log file each.

Generic on purpose (any argv, any readiness URL): SFU nodes and signaling nodes both start
here. A process counts as started once its readiness URL answers 200; every wait polls a
condition under a deadline, never a fixed sleep. :class:`Processes` owns what it started and
stops all of it at teardown (SIGTERM with a deadline, then SIGKILL), printing the logs of a failed
test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import aiohttp

from tests.backend.conftest import PATIENCE, UNIT

#: How often a wait re-checks its condition (a poll interval, not a wait for an outcome).
POLL = UNIT / 2
#: How long a process may take to answer its readiness URL: starting Python and importing aiortc
#: takes well over ten seconds on a loaded two-core box.
START_PATIENCE = 3 * PATIENCE


class NodeProcess:
    """One ``python -m signaling ...`` subprocess, its stdout+stderr in ``log_path``."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        ready_url: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.ready_url = ready_url
        self.log_path = log_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        #: ``time.monotonic()`` when it was killed (SIGKILL) or terminated (SIGTERM).
        self.stopped_at: float | None = None

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", "signaling", *self.args]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def start(self, *, patience: float = START_PATIENCE) -> None:
        """Spawn the process and return once ``GET ready_url`` answers 200.

        Fails (with the log) if the process exits first or is not ready within ``patience``.
        """
        self._spawn()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=max(POLL, 1.0))) as http:
            while True:
                if not self.running:
                    raise AssertionError(f"{self.name} exited with {self.returncode} before it was ready:\n{self.log_text()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(self.ready_url) as response:
                        if response.status == 200:
                            return
                if loop.time() > deadline:
                    raise AssertionError(f"{self.name} not ready at {self.ready_url} after {patience:.0f}s:\n{self.log_text()}")
                await asyncio.sleep(POLL)

    def _spawn(self) -> None:
        """Fork the child (does not wait for anything, so it may run on the loop)."""
        assert self.proc is None, f"{self.name} started already"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)

    def kill(self) -> None:
        """SIGKILL (``kill -9``): a crash, nothing cleaned up. Returns once the signal is sent."""
        assert self.proc is not None
        self.stopped_at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)

    async def terminate(self, *, patience: float = PATIENCE) -> int:
        """SIGTERM, then wait for the exit code; fails (after a SIGKILL) if it takes too long."""
        assert self.proc is not None
        self.stopped_at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await self.wait_exit(patience=patience)
        except TimeoutError:
            self.kill()
            await self.wait_exit()
            raise AssertionError(f"{self.name} did not exit within {patience:.0f}s of SIGTERM:\n{self.log_text()}") from None

    async def wait_exit(self, *, patience: float = PATIENCE) -> int:
        """The exit code, once the process has exited (TimeoutError after ``patience``)."""
        assert self.proc is not None
        async with asyncio.timeout(patience):
            while (code := self.proc.poll()) is None:
                await asyncio.sleep(POLL / 5)
        return code

    async def stop(self, *, patience: float = PATIENCE / 3) -> None:
        """Teardown: SIGTERM with a deadline, SIGKILL if needed; closes the log file."""
        try:
            if self.running:
                with contextlib.suppress(AssertionError):
                    await self.terminate(patience=patience)
            elif self.proc is not None:
                await self.wait_exit()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None


class Processes:
    """The processes of one test; :meth:`close` stops every one of them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.started: list[NodeProcess] = []

    async def start(
        self, name: str, args: Sequence[str], *, ready_url: str, env: Mapping[str, str] | None = None
    ) -> NodeProcess:
        node = NodeProcess(name, args, ready_url=ready_url, log_path=self.directory / f"{name}.log", env=env)
        self.started.append(node)
        await node.start()
        return node

    async def restart(self, node: NodeProcess, *, patience: float = START_PATIENCE) -> NodeProcess:
        """Start ``node``'s command again (same name, ports and arguments) once it has exited, as
        a supervisor would; ready once its readiness URL answers 200. Its log goes to a new file."""
        assert not node.running, f"{node.name} is still running"
        runs = sum(1 for n in self.started if n.name == node.name)
        again = NodeProcess(
            node.name, node.args, ready_url=node.ready_url, log_path=self.directory / f"{node.name}.{runs}.log",
            env=node.env,
        )
        self.started.append(again)
        await again.start(patience=patience)
        return again

    async def close(self, *, show_logs: bool) -> None:
        await asyncio.gather(*(node.stop() for node in self.started))
        if show_logs:
            for node in self.started:
                print(f"\n===== {node.name} (exit {node.returncode}): {' '.join(node.args)}\n{node.log_text()}")
