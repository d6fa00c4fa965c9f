"""Time in the tests: one environment variable, one unit, one patience, one way to wait.

Every timing is a multiple of :data:`UNIT`; raise ``SWITCHBOARD_TEST_TIME_SCALE`` (e.g. 3) on a
slow or loaded machine. Never sleep for a fixed time: wait for the condition with
:func:`eventually`, bounded by :data:`PATIENCE`. ``tests/conftest.py`` and
``tests/backend/conftest.py`` re-export these names, so older imports keep working.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable

#: The factor every test timing is multiplied by.
SCALE = float(os.environ.get("SWITCHBOARD_TEST_TIME_SCALE", "1"))
#: Every timing in the tests is a multiple of this.
UNIT = 0.05 * SCALE
#: Generous bound for "this must happen eventually" waits.
PATIENCE = 400 * UNIT


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = PATIENCE, what: str = "condition"
) -> None:
    """Wait until ``predicate()`` (sync or async) holds, polling on the loop; raises
    ``TimeoutError`` after ``timeout`` seconds. ``what`` names the condition for the reader."""
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(UNIT / 10)
