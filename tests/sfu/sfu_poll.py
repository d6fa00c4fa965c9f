"""Waiting on state that has no event of its own (SFU counters), with a scaled deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.sfu.sfu_testpeers import TIME_SCALE

POLL_INTERVAL = 0.02


async def eventually(predicate: Callable[[], bool], timeout: float) -> None:
    """Re-check ``predicate`` every 20 ms until it holds; fail after ``timeout`` (scaled)."""
    async with asyncio.timeout(timeout * TIME_SCALE):
        while not predicate():
            await asyncio.sleep(POLL_INTERVAL)
