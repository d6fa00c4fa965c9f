"""The one task registry of the service: nothing runs unowned, close awaits all, every task labelled.

asyncio keeps only weak references to tasks, and a task nobody awaits hides its exception. Every
background task of Switchboard (signaling and SFU) is spawned through a :class:`TaskRegistry`;
``close()`` cancels and awaits all of them. Each spawned task also carries a :class:`TaskLabel`
(an owner kind from a fixed set, an owner string such as ``session:<id>`` and its start time),
kept in a weak map so :func:`snapshot` can list the live tasks of the loop grouped by owner — the
Python counterpart of a labelled goroutine dump. The label map holds no strong reference: a
finished task disappears from it on its own.

This module lives in ``sfu`` because ``sfu`` must not import ``signaling``; ``signaling.runtime.tasks``
re-exports it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import weakref
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


class OwnerKind(enum.StrEnum):
    """What owns a task; the ``owner`` label of ``switchboard_tasks`` (a fixed set, never free text)."""

    SESSION = "session"
    ROOM = "room"
    CONNECTION = "connection"
    HUB = "hub"
    BACKEND = "backend"
    LEDGER = "ledger"
    WEBHOOKS = "webhooks"
    SFU = "sfu"
    CLUSTER = "cluster"
    #: Tasks not spawned through a registry (aiohttp's handler tasks, the loop's own).
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class TaskLabel:
    kind: OwnerKind
    #: Who owns the task, e.g. ``session:<id>``, ``room:<name>``, ``node:hub``.
    owner: str
    #: ``loop.time()`` when the task was spawned.
    started: float


_labels: weakref.WeakKeyDictionary[asyncio.Task[Any], TaskLabel] = weakref.WeakKeyDictionary()


def label_of(task: asyncio.Task[Any]) -> TaskLabel | None:
    return _labels.get(task)


def adopt(task: asyncio.Task[Any], kind: OwnerKind, owner: str) -> None:
    """Label a task its owner already keeps and awaits itself (a connection's reader and writer,
    the aiohttp handler task serving it), so it shows in dumps under that owner."""
    _labels[task] = TaskLabel(kind, owner, asyncio.get_running_loop().time())


class TaskRegistry:
    """Keeps a reference to every task it starts, labels it, logs failures, cancels and awaits on close."""

    def __init__(self, name: str, kind: OwnerKind = OwnerKind.OTHER) -> None:
        self.name = name
        self.kind = kind
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(
        self,
        coro: Coroutine[Any, Any, Any],
        *,
        name: str | None = None,
        owner: str | None = None,
        kind: OwnerKind | None = None,
    ) -> asyncio.Task[Any]:
        """Run ``coro`` as an owned task labelled ``kind``/``owner`` (default: the registry's kind
        and ``node:<registry name>``). Raises :class:`RuntimeError` after :meth:`close`."""
        if self._closed:
            coro.close()
            raise RuntimeError(f"task registry {self.name} is closed")
        loop = asyncio.get_running_loop()
        task = loop.create_task(coro, name=name)
        _labels[task] = TaskLabel(kind or self.kind, owner or f"node:{self.name}", loop.time())
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def spawn_if_open(
        self, coro: Coroutine[Any, Any, Any], *, name: str | None = None, owner: str | None = None,
    ) -> asyncio.Task[Any] | None:
        """Like :meth:`spawn`, but after :meth:`close` the coroutine is discarded (returns ``None``)."""
        if self._closed:
            coro.close()
            return None
        return self.spawn(coro, name=name, owner=owner)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("task %s of %s failed", task.get_name(), self.name, exc_info=exc)

    async def close(self) -> None:
        """Cancel every task and wait until each has finished."""
        self._closed = True
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """One live task in a dump."""

    name: str
    kind: OwnerKind
    owner: str
    #: Seconds since it was spawned (``None`` for unlabelled tasks: their start is unknown).
    age: float | None
    #: Where it is suspended: ``file:line function`` of its innermost coroutine frame outside asyncio.
    where: str
    #: Its await chain, outermost first (``file:line function`` per coroutine frame).
    stack: tuple[str, ...] = ()


_ASYNCIO_DIR = os.path.dirname(asyncio.__file__)


def _stack(task: asyncio.Task[Any]) -> tuple[str, ...]:
    """The task's await chain, outermost first, as ``file:line function`` per coroutine frame."""
    frames = []
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return tuple(frames)


def _where(stack: tuple[str, ...]) -> str:
    """The innermost frame outside asyncio itself (``Event.wait`` says less than who waits)."""
    for line in reversed(stack):
        if not line.startswith(_ASYNCIO_DIR + os.sep):
            return line
    return stack[-1] if stack else "-"


def snapshot(now: float | None = None) -> list[TaskInfo]:
    """Every unfinished task of the running loop, labelled or not (those are ``other``)."""
    loop = asyncio.get_running_loop()
    now = loop.time() if now is None else now
    out: list[TaskInfo] = []
    for task in asyncio.all_tasks(loop):
        if task.done():
            continue
        label = _labels.get(task)
        stack = _stack(task)
        if label is None:
            out.append(TaskInfo(task.get_name(), OwnerKind.OTHER, "unowned", None, _where(stack), stack))
        else:
            age = round(now - label.started, 3)
            out.append(TaskInfo(task.get_name(), label.kind, label.owner, age, _where(stack), stack))
    out.sort(key=lambda t: (t.kind.value, t.owner, t.name))
    return out


def live_labels() -> list[TaskLabel | None]:
    """The label of every unfinished task of the running loop (``None``: unlabelled). Cheap: no
    stacks are walked, so metrics scrapes and the leak sampler can call it on a busy node."""
    return [_labels.get(task) for task in asyncio.all_tasks() if not task.done()]


def count_live_by_kind() -> dict[OwnerKind, int]:
    counts = dict.fromkeys(OwnerKind, 0)
    for label in live_labels():
        counts[OwnerKind.OTHER if label is None else label.kind] += 1
    return counts


def count_by_kind(tasks: list[TaskInfo]) -> dict[OwnerKind, int]:
    counts = dict.fromkeys(OwnerKind, 0)
    for t in tasks:
        counts[t.kind] += 1
    return counts
