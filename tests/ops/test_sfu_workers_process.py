"""``switchboard serve --sfu-workers N`` as a process: its workers are owned children.

The real command on loopback: the serve process starts its worker processes, and when it is
killed with SIGKILL (no chance to clean up) the workers exit on their own, because their socket
to it closed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import PATIENCE, eventually, free_port


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow  # ~10 s: a serve process and two workers start; tests/media covers workers by default
async def test_workers_die_with_a_killed_serve_process() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_") or k.startswith("SWITCHBOARD_TEST_")}
    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signaling", "serve", "--port", str(port), "--sfu-workers", "2",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(ready, timeout=4 * PATIENCE, what="serve --sfu-workers 2 ready")
        workers = children_of(serve.pid)
        assert len(workers) == 2, workers
    finally:
        serve.send_signal(signal.SIGKILL)
        await serve.wait()
    await eventually(lambda: not any(alive(pid) for pid in workers), what="workers gone after their parent")
