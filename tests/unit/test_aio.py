"""cancel_and_wait: the task's own cancellation is absorbed, the caller's never is."""

from __future__ import annotations

import asyncio

import pytest

from signaling.runtime.aio import cancel_and_wait


async def test_the_task_is_cancelled_and_awaited() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(forever())
    await started.wait()
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_the_callers_cancellation_propagates() -> None:
    release = asyncio.Event()
    inner_started = asyncio.Event()

    async def slow_to_die() -> None:
        try:
            inner_started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # cleanup that takes a while
            raise

    inner = asyncio.create_task(slow_to_die())
    await inner_started.wait()
    outer = asyncio.create_task(cancel_and_wait(inner))
    await asyncio.sleep(0)
    outer.cancel()  # the caller is cancelled while it waits
    release.set()  # the task finishes its cleanup
    with pytest.raises(asyncio.CancelledError):
        await outer  # contextlib.suppress(CancelledError) would return normally here
    assert inner.cancelled()


async def test_an_exception_of_the_task_propagates() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="boom"):
        await cancel_and_wait(task)
