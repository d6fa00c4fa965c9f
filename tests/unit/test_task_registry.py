"""The one task registry (sfu.tasks, re-exported by signaling.runtime.tasks): spawn after close, close
under a deadline, failures logged once and kept, close from one of its own tasks."""

from __future__ import annotations

import asyncio
import logging

import pytest

from signaling.runtime.tasks import OwnerKind, TaskRegistry
from tests.support.timing import UNIT


async def test_spawn_after_close_raises_and_closes_the_coroutine() -> None:
    registry = TaskRegistry("unit", OwnerKind.HUB)
    await registry.close()
    ran = False

    async def work() -> None:
        nonlocal ran
        ran = True

    coro = work()
    with pytest.raises(RuntimeError, match="closed"):
        registry.spawn(coro)
    assert coro.cr_frame is None  # closed, so no "never awaited" warning either
    assert registry.closed and not ran


async def test_close_cancels_and_awaits_every_task() -> None:
    registry = TaskRegistry("unit")
    started = asyncio.Event()
    tasks = [registry.spawn(asyncio.Event().wait()) for _ in range(3)]
    tasks.append(registry.spawn(started.wait()))
    await registry.close()
    assert all(t.cancelled() for t in tasks)
    assert len(registry) == 0


async def test_close_gives_up_after_its_deadline_on_a_task_that_refuses_to_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = TaskRegistry("stubborn")
    release = asyncio.Event()
    entered = asyncio.Event()

    async def refuses() -> None:
        while True:
            try:
                entered.set()
                await release.wait()
                return
            except asyncio.CancelledError:
                continue  # swallowed, as a buggy library might

    task = registry.spawn(refuses(), name="refuser")
    await entered.wait()
    loop = asyncio.get_running_loop()
    began = loop.time()
    with caplog.at_level(logging.WARNING, logger="sfu.tasks"):
        await registry.close(2 * UNIT)
    assert loop.time() - began < 50 * UNIT  # bounded: it returned although the task still runs
    assert not task.done()
    assert any("refuser" in r.getMessage() and "still running" in r.getMessage() for r in caplog.records)
    release.set()
    await task


async def test_a_failure_is_logged_once_and_kept(caplog: pytest.LogCaptureFixture) -> None:
    registry = TaskRegistry("unit")

    async def fails() -> None:
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="sfu.tasks"):
        task = registry.spawn(fails(), name="failing")
        await asyncio.wait([task])
        await registry.close()
    logged = [r for r in caplog.records if "failing" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert registry.failed == 1
    assert isinstance(registry.errors[0], ValueError)


async def test_close_from_one_of_its_own_tasks_leaves_the_caller_alone() -> None:
    registry = TaskRegistry("unit")
    other = registry.spawn(asyncio.Event().wait())

    async def finisher() -> str:
        await registry.close()
        return "finished"

    me = registry.spawn(finisher())
    assert await me == "finished"
    assert other.cancelled()


async def test_spawn_if_open_discards_after_close() -> None:
    registry = TaskRegistry("unit")
    await registry.close()

    async def work() -> None:
        raise AssertionError("must not run")

    assert registry.spawn_if_open(work()) is None
