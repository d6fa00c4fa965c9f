"""A hashed timer wheel: many deadlines, one clock, bucketed by a fixed resolution. No I/O.

Every connection of a node has one heartbeat deadline (its next ping, or the moment its silence
would make it dead). A sleeping task per connection costs a timer handle, a future and a task
step per wake-up; one driver over this wheel wakes once per due bucket and serves every deadline
in it (``signaling.server.ticker`` is that driver).

Rules:

- A key is in at most one bucket; scheduling it again moves it.
- A key scheduled for ``when`` lands in the bucket ``ceil(when / resolution)``, so it is never
  due before ``when`` and at most one resolution after it.
- :meth:`pop_due` never returns a key that was (re)scheduled during the pop that is under way:
  a key whose time has already come lands in the bucket after the last one popped, so a driver
  that reschedules what it pops always makes progress.
"""

from __future__ import annotations

import heapq
import math
from typing import Generic, TypeVar

K = TypeVar("K")  # hashable


class TimerWheel(Generic[K]):
    """Deadlines of keys, grouped in buckets of ``resolution`` seconds of one clock."""

    def __init__(self, resolution: float, now: float = 0.0) -> None:
        if not (math.isfinite(resolution) and resolution > 0):
            raise ValueError(f"resolution must be a positive number of seconds, not {resolution!r}")
        self.resolution = resolution
        self._buckets: dict[int, dict[K, None]] = {}
        self._where: dict[K, int] = {}
        #: Bucket numbers that may hold keys, smallest first (stale numbers are skipped lazily).
        self._heap: list[int] = []
        #: The last bucket popped: nothing is ever scheduled at or before it.
        self._cursor = math.floor(now / resolution)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def schedule(self, key: K, when: float) -> None:
        """Make ``key`` due at ``when`` (replacing its previous deadline, if any)."""
        bucket = max(math.ceil(when / self.resolution), self._cursor + 1)
        old = self._where.get(key)
        if old == bucket:
            return
        if old is not None:
            self._discard(key, old)
        keys = self._buckets.get(bucket)
        if keys is None:
            keys = self._buckets[bucket] = {}
            heapq.heappush(self._heap, bucket)
        keys[key] = None
        self._where[key] = bucket

    def cancel(self, key: K) -> bool:
        """Forget ``key``; False if it was not scheduled."""
        bucket = self._where.pop(key, None)
        if bucket is None:
            return False
        keys = self._buckets[bucket]
        del keys[key]
        if not keys:
            del self._buckets[bucket]
        return True

    def _discard(self, key: K, bucket: int) -> None:
        keys = self._buckets[bucket]
        del keys[key]
        if not keys:
            del self._buckets[bucket]
        del self._where[key]

    def next_due(self) -> float | None:
        """The clock time at which the earliest non-empty bucket is due; None when empty."""
        heap = self._heap
        while heap and heap[0] not in self._buckets:
            heapq.heappop(heap)
        return heap[0] * self.resolution if heap else None

    def pop_due(self, now: float) -> list[K]:
        """Remove and return every key due at ``now``, earliest bucket first (insertion order
        within a bucket)."""
        res = self.resolution
        cursor = max(self._cursor, math.floor(now / res))
        out: list[K] = []
        heap = self._heap
        # The same test as next_due's time (bucket x resolution), so a driver woken at that time
        # always finds the bucket due, whatever the rounding of the division.
        while heap and heap[0] * res <= now:
            bucket = heapq.heappop(heap)
            cursor = max(cursor, bucket)
            keys = self._buckets.pop(bucket, None)
            if keys is None:
                continue
            for key in keys:
                del self._where[key]
            out.extend(keys)
        self._cursor = cursor
        return out
