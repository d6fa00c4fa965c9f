"""asyncio helpers shared by the shell and the SDK (no project imports)."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has finished.

    The task's own ``CancelledError`` is absorbed, but the caller's is not: if the caller is
    cancelled while it waits (``contextlib.suppress(CancelledError)`` would swallow that too),
    the cancellation propagates. Any other exception the task ends with propagates as well.
    """
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
