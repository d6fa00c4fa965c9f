"""Generic Redis I/O every cluster module shares (the backend, the session ledger, the node
registry, remote media, the SFU node): which errors mean "Redis is not answering", one call under
a deadline, stream entry ids, start-with-retry, and the one :class:`StreamReader`. Kept apart
from ``redis.py`` so the ledger can use them without importing the backend that creates it (that
was an import cycle).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from signaling.core.backoff import Backoff
from signaling.core.errors import BackendUnavailable
from signaling.runtime.tasks import OwnerKind, TaskRegistry

log = logging.getLogger(__name__)

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


def stream_id(entry_id: str) -> tuple[int, int]:
    """A stream entry id (``<ms>-<seq>``) as a comparable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def append(redis: Redis, key: str, payload: str, *, maxlen: int, ttl: float, op_timeout: float, what: str) -> None:
    """Append one entry (field ``m``) to a stream, bounded by ``maxlen`` (approximate) and ``ttl``.

    ``MULTI``/``EXEC``: the TTL is refreshed with every append, so a stream nobody writes to (its
    reader died) disappears on its own. No retry: a retried append whose reply was lost would
    run a request twice.
    """
    pipe = redis.pipeline(transaction=True)
    pipe.xadd(key, {"m": payload}, maxlen=maxlen, approximate=True)
    pipe.pexpire(key, round(ttl * 1000))
    await bounded(pipe.execute(), op_timeout, what)


async def start_with_retry(
    attempt: Callable[[], Awaitable[None]], *, patience: float, what: str, backoff: Backoff | None = None,
) -> None:
    """Run ``attempt`` until it does not raise :class:`BackendUnavailable`, for up to ``patience``
    seconds (with backoff: at once, then up to 50 ms ... 1 s apart); then raise
    :class:`BackendUnavailable`. How every cluster process starts while Redis may still be coming up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    backoff = backoff or Backoff(base=0.05, cap=1.0)
    while True:
        try:
            await attempt()
            return
        except BackendUnavailable as exc:
            delay = backoff.next_delay()
            if loop.time() + delay >= deadline:
                raise BackendUnavailable(f"{what}: redis unreachable for {patience} s at start") from exc
            log.warning("%s: start: %s; retrying", what, exc)
            await asyncio.sleep(delay)


#: Handles one entry: its id and its fields.
EntryHandler = Callable[[str, dict[str, str]], Awaitable[None]]


class StreamReader:
    """The one reader of one Redis stream: ``XREAD BLOCK`` from the last id it handled, in one
    owned task.

    Position: on its first sync it skips what is already there (those entries were written for an
    earlier incarnation of its node id) unless :meth:`read_from_start` was called; across an
    outage it keeps its position; if the stream is gone or was recreated meanwhile (Redis
    restarted empty, the key expired, its node was reaped) it reads the new one from the start.

    Outage: every call is bounded (``op_timeout``; an ``XREAD`` by ``block + op_timeout``). A
    failure marks it unhealthy; it backs off and, before it reads again, *resyncs*: the owner's
    ``resync`` hook (the backend writes its members back), then its position. The owner's
    ``dirty`` hook asks for a resync without an outage.

    Keepalive: ``keepalive`` runs every ``keepalive_interval`` seconds between reads (the
    ``XREAD`` block is shortened to keep that beat); returning False asks for a resync.

    Entries are handled one at a time, in stream order, at most ``count`` per read; a handler
    that raises is logged and the reader goes on with the next entry. :meth:`close` ends the
    task under a deadline.
    """

    def __init__(
        self,
        redis: Redis,
        key: str,
        handle: EntryHandler,
        *,
        block: float,
        op_timeout: float,
        count: int = 256,
        name: str | None = None,
        kind: OwnerKind = OwnerKind.CLUSTER,
        backoff: Backoff | None = None,
        resync: Callable[[], Awaitable[None]] | None = None,
        dirty: Callable[[], bool] | None = None,
        keepalive: Callable[[], Awaitable[bool]] | None = None,
        keepalive_interval: float = 0.0,
    ) -> None:
        self.key = key
        self.name = name or f"stream {key}"
        #: Redis answered the last call (sync or read).
        self.healthy = False
        self._redis = redis
        self._handle = handle
        self._block = block
        self._op_timeout = op_timeout
        self._count = count
        self._backoff = backoff or Backoff(base=0.05, cap=2.0, stable_after=4 * block)
        self._resync = resync
        self._dirty = dirty
        self._keepalive = keepalive
        self._keepalive_interval = keepalive_interval
        self._last_id: str | None = None
        self._stopped = False
        self._tasks = TaskRegistry(f"reader:{key}", kind)

    @property
    def last_id(self) -> str | None:
        """Id of the last entry handled (None before the first sync)."""
        return self._last_id

    async def sync(self) -> None:
        """The owner's resync, then the position; healthy afterwards. Raises :class:`BackendUnavailable`."""
        if self._resync is not None:
            await self._resync()
        await self.sync_position()

    async def sync_position(self) -> None:
        """Position the reader (see the class docstring); healthy afterwards."""
        newest = cast(
            "list[tuple[str, Any]]",
            await bounded(self._redis.xrevrange(self.key, count=1), self._op_timeout, "xrevrange"),
        )
        newest_id = newest[0][0] if newest else None
        if self._last_id is None:
            self._last_id = newest_id or "0-0"
        elif newest_id is None or stream_id(newest_id) < stream_id(self._last_id):
            self._last_id = "0-0"
        self.healthy = True

    def read_from_start(self) -> None:
        """Read every entry, not only those appended from now on (before :meth:`start`)."""
        self._last_id = "0-0"

    def start(self) -> asyncio.Task[Any]:
        """Start the reading task (owned by this reader). Raises RuntimeError after :meth:`close`."""
        return self._tasks.spawn(self._run(), name=f"reader:{self.key}")

    async def close(self, deadline: float) -> None:
        """Stop reading: cancel the task and wait for it, for up to ``deadline`` seconds. Idempotent."""
        self._stopped = True
        await self._tasks.close(deadline)
        # After the task: a cancellation redis-py swallowed lets one last XREAD complete.
        self.healthy = False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self._backoff
        backoff.connected(loop.time())
        interval = self._keepalive_interval if self._keepalive is not None else 0.0
        next_alive = loop.time() + interval
        need_sync = self._last_id is None
        # ``while not stopped`` rather than ``while True``: on Python 3.11, redis-py's internal
        # ``asyncio.wait_for``/``timeout`` can swallow a cancellation that races a completing
        # call, and ``close()`` must still end this loop within one XREAD block.
        while not self._stopped:
            try:
                if need_sync or (self._dirty is not None and self._dirty()):
                    was_healthy = self.healthy
                    await self.sync()
                    if not was_healthy:
                        log.info("%s: in sync, reading from %s", self.name, self._last_id)
                    need_sync = False
                    backoff.connected(loop.time())
                    next_alive = loop.time() + interval
                elif interval and loop.time() >= next_alive:
                    next_alive = loop.time() + interval
                    assert self._keepalive is not None
                    if not await self._keepalive():
                        log.warning("%s: keepalive lost; resyncing", self.name)
                        need_sync = True
                        continue
                assert self._last_id is not None
                block = self._block
                if interval:
                    block = min(block, max(0.0, next_alive - loop.time()))
                reply = await bounded(
                    self._redis.xread({self.key: self._last_id}, count=self._count, block=max(1, round(block * 1000))),
                    self._block + self._op_timeout,
                    "xread",
                )
                self.healthy = not self._stopped
            except BackendUnavailable as exc:
                if self.healthy:
                    log.warning("%s: lost redis: %s", self.name, exc)
                    backoff.disconnected(loop.time())
                self.healthy = False
                need_sync = True
                await asyncio.sleep(backoff.next_delay())
                continue
            for _stream, entries in cast("list[tuple[str, list[tuple[str, dict[str, str]]]]]", reply or []):
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    try:
                        await self._handle(entry_id, fields)
                    except Exception:
                        # One bad entry must not stop the stream; the failure is logged loudly.
                        log.exception("%s: handling entry %s failed", self.name, entry_id)
