"""Script calls to Redis in pipelines: one round trip for a burst, no ``SCRIPT EXISTS`` per batch.

Two costs dominated a relayed message on a Redis-backed node (docs/benchmarks.md): one round
trip per relay script call, each paying redis-py's connection checkout, command packing and an
event-loop wake-up for its reply; and, for every ledger batch, redis-py's pipeline running
``SCRIPT EXISTS`` before the batch (a second round trip) because the scripts were queued as
``Script`` objects. Here scripts run as ``EVALSHA`` in a non-transactional pipeline; only a
``NOSCRIPT`` reply (Redis restarted and lost its script cache) loads the script and runs *those*
calls again — a ``NOSCRIPT`` call did not run, so running it again cannot duplicate anything.

:class:`ScriptBatcher` gathers concurrent calls of one script (relays from many connections
of one node) into one pipeline while the previous one is in flight. Every call stays its own
atomic script with its own reply: batching changes how calls travel, never what they do, so
the exactly-once arguments of each script are untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from signaling.cluster.durable import ReplicaWait
from signaling.cluster.redis_io import bounded
from signaling.core.errors import BackendUnavailable
from signaling.runtime.tasks import TaskRegistry

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

#: One script call: the script, its KEYS, its ARGV.
Call = tuple["AsyncScript", Sequence[str], Sequence[Any]]


async def run_scripts(
    redis: Redis, calls: Sequence[Call], *, durable: ReplicaWait | None, seconds: float, what: str
) -> list[Any]:
    """Run ``calls`` in one pipeline (plus ``durable``'s ``WAIT``/``ROLE``); one reply each.

    A call that failed in Redis gets its exception as its reply (a
    :class:`BackendUnavailable`); a lost connection or timeout raises
    :class:`BackendUnavailable` for the whole batch (each call ran at most once).
    """
    replies: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for attempt in range(2):
        async with redis.pipeline(transaction=False) as pipe:
            for index in todo:
                script, keys, args = calls[index]
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            extra = durable.add(pipe) if durable is not None and durable.enabled else 0
            got: list[Any] = await bounded(pipe.execute(raise_on_error=False), seconds, what)
        if extra:
            assert durable is not None
            for reply in got[-extra:]:
                if isinstance(reply, Exception):
                    raise BackendUnavailable(f"redis {what} failed: {reply!r}") from reply
            durable.check(got, extra, what)
        missing = []
        for index, reply in zip(todo, got, strict=True):
            if isinstance(reply, NoScriptError) and attempt == 0:
                missing.append(index)
            elif isinstance(reply, Exception):
                replies[index] = BackendUnavailable(f"redis {what} failed: {reply!r}")
            else:
                replies[index] = reply
        if not missing:
            break
        for script in {id(calls[i][0]): calls[i][0] for i in missing}.values():
            await bounded(redis.script_load(script.script), seconds, what)
        todo = missing
    return replies


class ScriptBatcher:
    """Runs concurrent calls of one script in as few round trips as their arrival allows.

    The first call of a burst starts a flush task; calls arriving while a pipeline is in flight
    wait for the next one (at most ``max_batch`` calls per pipeline). At most ``limit`` calls
    wait at once: beyond that a call fails at once with :class:`BackendUnavailable` (the hub
    treats it like Redis being slow). Unloaded, a call costs the same single round trip as a
    plain script call.
    """

    def __init__(
        self,
        redis: Redis,
        script: AsyncScript,
        tasks: TaskRegistry,
        *,
        durable: ReplicaWait | None,
        seconds: float,
        what: str,
        max_batch: int = 128,
        limit: int = 10_000,
    ) -> None:
        self._redis = redis
        self._script = script
        self._tasks = tasks
        self._durable = durable
        self._seconds = seconds
        self._what = what
        self._max_batch = max_batch
        self._limit = limit
        self._queue: list[tuple[Sequence[str], Sequence[Any], asyncio.Future[Any]]] = []
        self._flushing = False
        #: Pipelines sent and calls carried (calls / batches = the mean burst size).
        self.batches = 0
        self.calls = 0

    async def call(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the script once with ``keys``/``args``; its reply (or BackendUnavailable)."""
        if len(self._queue) >= self._limit:
            raise BackendUnavailable(f"redis {self._what}: {self._limit} calls already waiting")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, args, future))
        if not self._flushing:
            self._flushing = True
            try:
                self._tasks.spawn(self._flush(), name=f"batch:{self._what}")
            except RuntimeError as exc:  # the backend is closing
                self._flushing = False
                self._queue.remove((keys, args, future))
                raise BackendUnavailable(f"redis {self._what}: closing") from exc
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: len(batch)]
                calls: list[Call] = [(self._script, keys, args) for keys, args, _ in batch]
                self.batches += 1
                self.calls += len(batch)
                try:
                    replies = await run_scripts(
                        self._redis, calls, durable=self._durable, seconds=self._seconds,
                        what=self._what,
                    )
                except BackendUnavailable as exc:
                    replies = [exc] * len(batch)
                except BaseException as exc:
                    # Cancelled (the backend closes) or a bug: no waiter may hang on it.
                    failure = BackendUnavailable(f"redis {self._what}: {exc!r}")
                    for _, _, future in batch + self._queue:
                        if not future.done():
                            future.set_exception(failure)
                    self._queue.clear()
                    raise
                for (_, _, future), reply in zip(batch, replies, strict=True):
                    if future.done():
                        continue  # its caller was cancelled; the script may have run
                    if isinstance(reply, BaseException):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            self._flushing = False
