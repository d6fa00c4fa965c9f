"""One task drives every connection's heartbeat: the I/O shell around :class:`TimerWheel`.

A connection that joined registers here with its first deadline; when its bucket is due the
ticker calls its ``tick(now)``, which does what the connection's own heartbeat task did on
waking (close 4013 if the client is dead, send a ping if one is due) and returns its next
deadline, or None to leave the wheel. Costs per ping: no task, no timer handle, no future of
its own; one wake-up of this task serves every connection due in the same bucket.

The task is started by :meth:`start` and ended by :meth:`stop` (the server's lifecycle owns
both), and is registered as ``heartbeats`` of the hub in the task registry.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Protocol

from signaling.core.timerwheel import TimerWheel
from signaling.runtime.aio import cancel_and_wait
from signaling.runtime.tasks import OwnerKind, adopt

log = logging.getLogger(__name__)


class Ticking(Protocol):
    def tick(self, now: float) -> float | None:
        """Do what is due at ``now``; return the next deadline (loop time), or None when done."""
        ...


def resolution_for(interval: float) -> float:
    """The wheel's bucket width for a heartbeat interval: 50 ms, finer for short test intervals
    (a deadline fires at most one bucket late; the ping jitter alone is ±10 % of the interval)."""
    return min(0.05, max(interval / 100, 0.001))


class Ticker:
    def __init__(self, resolution: float) -> None:
        self._wheel: TimerWheel[Ticking] = TimerWheel(resolution)
        self._wake = asyncio.Event()
        #: Loop time the task sleeps until (inf while the wheel is empty).
        self._target = math.inf
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._wheel)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="heartbeats:node")
            adopt(self._task, OwnerKind.HUB, "node:heartbeats")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    def add(self, item: Ticking, when: float) -> None:
        """Call ``item.tick`` at ``when`` (or up to one bucket later)."""
        self._wheel.schedule(item, when)
        if when < self._target:
            self._wake.set()

    def remove(self, item: Ticking) -> None:
        self._wheel.cancel(item)

    async def _run(self) -> None:
        wheel = self._wheel
        loop = asyncio.get_running_loop()
        while True:
            due = wheel.next_due()
            self._target = math.inf if due is None else due
            if due is None or due > loop.time():
                self._wake.clear()
                try:
                    async with asyncio.timeout_at(None if due is None else due):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            now = loop.time()
            for item in wheel.pop_due(now):
                try:
                    when = item.tick(now)
                except Exception:
                    # A bug in one connection's tick must not stop every connection's heartbeat.
                    log.exception("heartbeat tick of %r failed; it leaves the wheel", item)
                    continue
                if when is not None:
                    wheel.schedule(item, when)
