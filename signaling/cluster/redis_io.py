"""Generic Redis I/O helpers every cluster module shares (the backend, the session ledger, the
node registry, remote media): which errors mean "Redis is not answering", and one call under a
deadline. Kept apart from ``redis.py`` so the ledger can use them without importing the backend
that creates it (that was an import cycle).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from redis.exceptions import RedisError

from signaling.core.errors import BackendUnavailable

T = TypeVar("T")

#: Errors that mean "Redis is not reachable or not answering" (asyncio.timeout raises TimeoutError).
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


async def bounded(call: Awaitable[T], seconds: float, what: str) -> T:
    """Await one Redis call under a deadline; every failure becomes :class:`BackendUnavailable`."""
    try:
        async with asyncio.timeout(seconds):
            return await call
    except REDIS_ERRORS as exc:
        raise BackendUnavailable(f"redis {what} failed: {exc!r}") from exc
