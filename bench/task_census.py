"""What leak observability costs the event loop: one leak-alarm sample, one /metrics count and
one full task dump, against a bare ``asyncio.all_tasks()`` measured in the same run.

N parked tasks (a quarter labelled ``session``, a quarter ``connection``, the rest unlabelled,
each three coroutine frames deep, as a connection's writer is) on one loop; each operation is
timed over repeated calls and reported per call and as a ratio to the baseline. The sampler runs
once per ``session.leak_sample_interval`` (5 s by default): its per-call time is the loop stall.

    python bench/task_census.py                      # N = 1,000 and 10,000
    python bench/task_census.py --tasks 2000,40000 --repeat 20

No I/O, bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any

# Run from bench/: the repository root first, or bench/sfu.py would shadow the sfu package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from signaling.runtime.leakwatch import LeakWatch
from signaling.runtime.tasks import OwnerKind, TaskRegistry, adopt, count_live_by_kind, snapshot


async def _inner(event: asyncio.Event) -> None:
    await event.wait()


async def _middle(event: asyncio.Event) -> None:
    await _inner(event)


async def _outer(event: asyncio.Event) -> None:
    await _middle(event)


def _per_call(fn: Callable[[], Any], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


async def measure(n: int, repeat: int) -> None:
    stop = asyncio.Event()
    sessions = TaskRegistry("bench-sessions", OwnerKind.SESSION)
    loose: list[asyncio.Task[None]] = []
    for i in range(n):
        if i % 4 == 0:
            sessions.spawn(_outer(stop), owner=f"session:s{i}")
        else:
            task = asyncio.get_running_loop().create_task(_outer(stop))
            loose.append(task)
            if i % 4 == 1:
                adopt(task, OwnerKind.CONNECTION, f"connection:{i}")
    await asyncio.sleep(0)  # let every task park
    live = {f"s{i}" for i in range(0, n, 4)}
    watch = LeakWatch(lambda: live, interval=5.0)
    base = _per_call(lambda: asyncio.all_tasks(), repeat)
    rows = [
        ("asyncio.all_tasks() (baseline)", base),
        ("leak-alarm sample", _per_call(lambda: watch.sample(0.0), repeat)),
        ("switchboard_tasks count", _per_call(count_live_by_kind, repeat)),
        ("full dump (snapshot)", _per_call(snapshot, max(1, repeat // 4))),
    ]
    assert watch.alerts == 0
    print(f"\n{n:,} tasks")
    for name, seconds in rows:
        print(f"  {name:<32} {seconds * 1e3:9.3f} ms/call  {seconds / base:6.1f}x baseline")
    stop.set()
    await sessions.close()
    await asyncio.gather(*loose)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", default="1000,10000", help="comma-separated task counts")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    for n in (int(x) for x in args.tasks.split(",")):
        asyncio.run(measure(n, args.repeat))


if __name__ == "__main__":
    main()
