"""Run the examples/ bots as a user does: a separate Python process with command-line flags.

Every wait is bounded (``BOT_PATIENCE``); the process is stopped at teardown (SIGINT, then
SIGKILL after a bound), and its output is kept for failure messages.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from tests.media.peers import MEDIA_PATIENCE

#: Bound of a bot's waits: a fresh Python process imports aiortc and PyAV (seconds of CPU, far
#: more on a loaded machine) before it joins.
BOT_PATIENCE = 3 * MEDIA_PATIENCE
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class Bot:
    def __init__(self, script: str, *args: str) -> None:
        self.argv = [sys.executable, str(EXAMPLES / script), *args]
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def start(self) -> Bot:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    async def wait_line(self, text: str, timeout: float = BOT_PATIENCE) -> str:
        """Until the bot printed a line containing ``text``; returns it."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = next((line for line in self.lines if text in line), None)
                    if found is not None:
                        return found
                    assert self._reader is not None
                    if self._reader.done():
                        raise AssertionError(f"bot exited before printing {text!r}:\n{self.output}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"bot never printed {text!r}:\n{self.output}") from None

    async def wait_exit(self, timeout: float = BOT_PATIENCE) -> int:
        assert self.process is not None
        async with asyncio.timeout(timeout):
            code = await self.process.wait()
        if self._reader is not None:
            await self._reader
        return code

    async def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(MEDIA_PATIENCE / 4):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            await self._reader  # ends at the process's EOF
