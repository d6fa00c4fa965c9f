"""Task-leak alarm: a CUSUM over tasks that outlive their session, sampled over time.

:class:`LeakAlarm` is pure (no clock, no I/O): each :meth:`LeakAlarm.observe` takes one sample —
the live session ids and the owner label of every live task of kind ``session`` — and returns a
:class:`LeakReport` the first time the cumulative sum crosses its threshold.

The signal is the number of tasks outliving their session: tasks whose ``session:<id>`` owner is
no longer live *and was already gone at the previous sample*. A session's own short tail (the task
that releases an ended session runs a moment after the session left the table) is therefore never
counted unless it lasts a whole sample interval. It is a count, not a ratio to live sessions: a
ratio would let a busy node hide hundreds of leaked tasks behind its sessions. The ratio is
reported alongside (``per_session``). CUSUM ``S = max(0, S + x - k)`` fires when ``S > h``; after
firing it stays quiet until ``S`` returns to zero (the leak went away): one alert per episode.

:class:`LeakWatch` is the thin shell: a periodic sampler that reads the hub and
:func:`signaling.runtime.tasks.snapshot`, logs one WARNING with the snapshot when the alarm fires and
keeps that snapshot for ``GET /admin/debug/tasks``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from signaling.runtime.tasks import OwnerKind, TaskInfo, live_labels, snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeakReport:
    #: The CUSUM value that crossed the threshold.
    score: float
    #: Owners of the tasks that outlived their session, most tasks first.
    owners: list[tuple[str, int]]
    #: Outliving tasks per live session (at least one) at the firing sample.
    per_session: float


@dataclass(slots=True)
class LeakAlarm:
    """One-sided CUSUM ``S = max(0, S + x - k)`` over outliving tasks; fires when ``S > h``, once per episode."""

    #: Slack: outliving tasks tolerated on one sample.
    k: float = 0.5
    #: Threshold on the cumulative excess (one leaked task fires after ``h / (1 - k)`` samples).
    h: float = 4.0
    score: float = 0.0
    fired: bool = False
    samples: int = 0
    #: Owners already gone at the previous sample.
    _gone: set[str] = field(default_factory=set)

    def observe(self, live_sessions: Collection[str], session_task_owners: Collection[str]) -> LeakReport | None:
        """One sample: ``live_sessions`` are session ids, ``session_task_owners`` the owner label
        (``session:<id>``) of each live task of kind ``session``."""
        self.samples += 1
        live = {f"session:{s}" for s in live_sessions}
        gone = {o for o in session_task_owners if o not in live}
        outliving = Counter(o for o in session_task_owners if o in gone and o in self._gone)
        self._gone = gone
        x = sum(outliving.values())
        self.score = max(0.0, self.score + x - self.k)
        if self.score == 0.0:
            self.fired = False
        if self.fired or self.score <= self.h:
            return None
        self.fired = True
        return LeakReport(round(self.score, 3), outliving.most_common(), round(x / max(1, len(live)), 3))


@dataclass(frozen=True, slots=True)
class LeakAlert:
    report: LeakReport
    #: Wall-clock time (epoch seconds) of the firing sample.
    at: float
    tasks: list[TaskInfo]


class LeakWatch:
    """Samples every ``interval`` seconds; keeps the last alert (with its task snapshot)."""

    def __init__(self, live_sessions: Callable[[], Collection[str]], interval: float, alarm: LeakAlarm | None = None) -> None:
        self._live_sessions = live_sessions
        self.interval = interval
        self.alarm = alarm or LeakAlarm()
        self.last_alert: LeakAlert | None = None
        self.alerts = 0

    def sample(self, wall_time: float) -> LeakAlert | None:
        owners = [label.owner for label in live_labels() if label is not None and label.kind is OwnerKind.SESSION]
        report = self.alarm.observe(self._live_sessions(), owners)
        if report is None:
            return None
        tasks = snapshot()  # stacks are walked only when the alarm fires
        alert = LeakAlert(report, wall_time, tasks)
        self.last_alert = alert
        self.alerts += 1
        lines = "\n".join(f"  {t.kind.value:<10} {t.owner:<40} {t.name:<32} age={t.age}s at {t.where}" for t in tasks)
        log.warning("task leak suspected (cusum %.2f, %.2f outliving tasks per session); owners: %s\n%s",
                    report.score, report.per_session,
                    ", ".join(f"{o} ({n})" for o, n in report.owners), lines)
        return alert

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sample(time.time())
