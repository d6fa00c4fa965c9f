"""Task labels, dumps and the leak alarm: pure CUSUM logic, and the registry on a bare loop (no I/O)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from rich.console import Console

from signaling.runtime.leakwatch import LeakAlarm, LeakWatch
from signaling.runtime.tasks import OwnerKind, TaskRegistry, count_by_kind, label_of, snapshot
from signaling.server.admin import tasks_json
from signaling.tools.admin_cli import task_tables

# -- LeakAlarm (pure) ---------------------------------------------------------------------------


def test_a_task_outliving_its_session_fires_once_and_names_the_owner() -> None:
    alarm = LeakAlarm(k=0.5, h=4.0)
    # sample 0: session a is live with its grace task; then a ends but its task stays.
    assert alarm.observe({"a"}, ["session:a"]) is None
    reports = [alarm.observe(set(), ["session:a"]) for _ in range(20)]
    fired = [r for r in reports if r is not None]
    assert len(fired) == 1  # logs once per episode
    report = fired[0]
    assert report.owners == [("session:a", 1)]
    assert report.score > 4.0
    # the first sample after the end only marks it gone; then +0.5 per sample: fires on the 10th
    assert reports.index(report) == 9


def test_short_tails_and_live_sessions_stay_quiet() -> None:
    alarm = LeakAlarm()
    for i in range(10_000):
        live = {f"s{i}", f"s{i + 1}"}
        # every session has a task; the one that just ended still runs its release for one sample
        owners = [f"session:s{i}", f"session:s{i + 1}", f"session:s{i - 1}"]
        assert alarm.observe(live, owners) is None
    assert alarm.score == 0.0


def test_the_alarm_rearms_once_the_leak_is_gone() -> None:
    alarm = LeakAlarm(k=0.5, h=1.0)
    fired = [alarm.observe(set(), ["session:x"]) for _ in range(10)]
    assert sum(r is not None for r in fired) == 1
    while alarm.score > 0:
        assert alarm.observe(set(), []) is None
    fired = [alarm.observe(set(), ["session:y", "session:y", "session:z"]) for _ in range(10)]
    second = [r for r in fired if r is not None]
    assert len(second) == 1
    assert second[0].owners == [("session:y", 2), ("session:z", 1)]


# -- registry labels and snapshots (a bare event loop, no sockets) ---------------------------------


async def _parked(event: asyncio.Event) -> None:
    await event.wait()


async def test_spawned_tasks_carry_their_owner_and_show_where_they_wait() -> None:
    registry = TaskRegistry("unit", OwnerKind.HUB)
    never = asyncio.Event()
    default = registry.spawn(_parked(never), name="plain")
    owned = registry.spawn(_parked(never), name="grace:s1", owner="session:s1", kind=OwnerKind.SESSION)
    try:
        assert label_of(default) is not None and label_of(default).owner == "node:unit"  # type: ignore[union-attr]
        await asyncio.sleep(0)  # let both tasks start and park
        tasks = {t.name: t for t in snapshot()}
        assert tasks["plain"].kind is OwnerKind.HUB
        assert tasks["grace:s1"].owner == "session:s1"
        assert tasks["grace:s1"].kind is OwnerKind.SESSION
        assert tasks["grace:s1"].age is not None and tasks["grace:s1"].age >= 0
        # where: the innermost frame outside asyncio (_parked, not Event.wait); the stack has both
        assert tasks["grace:s1"].where.endswith(" _parked"), tasks["grace:s1"].where
        assert tasks["grace:s1"].stack[-1].endswith(" wait") and len(tasks["grace:s1"].stack) == 2
        # this test's own task was spawned by nobody here: counted as other
        counts = count_by_kind(snapshot())
        assert counts[OwnerKind.SESSION] == 1 and counts[OwnerKind.HUB] == 1 and counts[OwnerKind.OTHER] >= 1
        assert not owned.done()
    finally:
        await registry.close()
    assert all(t.kind is OwnerKind.OTHER for t in snapshot())


async def test_spawn_if_open_discards_after_close() -> None:
    registry = TaskRegistry("unit")
    await registry.close()
    assert registry.spawn_if_open(_parked(asyncio.Event())) is None


async def test_watch_captures_a_snapshot_naming_the_leaked_owner(caplog: pytest.LogCaptureFixture) -> None:
    live: set[str] = {"s1"}
    watch = LeakWatch(lambda: live, interval=1.0, alarm=LeakAlarm(k=0.5, h=1.0))
    leaky = TaskRegistry("leaky", OwnerKind.SESSION)
    leaky.spawn(_parked(asyncio.Event()), name="forgotten", owner="session:s1")
    try:
        assert watch.sample(0.0) is None
        live.clear()  # the session ended; its task did not
        alerts = [watch.sample(float(i)) for i in range(1, 8)]
        alert = next(a for a in alerts if a is not None)
        assert alert.report.owners == [("session:s1", 1)]
        assert any(t.name == "forgotten" for t in alert.tasks)
        assert watch.alerts == 1
        warnings = [r for r in caplog.records if r.name == "signaling.runtime.leakwatch" and r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "session:s1 (1)" in warnings[0].getMessage()
        assert "forgotten" in warnings[0].getMessage()  # the snapshot is in the log line
        body = tasks_json(snapshot(), watch)
        assert body["leak_alarm"]["last_alert"]["owners"] == [{"owner": "session:s1", "tasks": 1}]
        assert any(g["kind"] == "session" and g["owner"] == "session:s1" for g in body["owners"])
    finally:
        await leaky.close()


def test_task_tables_escape_owner_text() -> None:
    data = {
        "total": 1,
        "owners": [{"kind": "room", "owner": "room:[bold]x[/]", "tasks": [{"name": "t[/]", "age_s": 1.5, "where": "f.py:1 g"}]}],
        "leak_alarm": {"score": 0, "threshold": 4, "samples": 3, "alerts": 0, "last_alert": None},
    }
    console = Console(width=200, record=True)
    for table in task_tables(data):
        console.print(table)
    text = console.export_text()
    assert "room:[bold]x[/]" in text and "t[/]" in text
