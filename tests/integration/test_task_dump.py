"""Leak observability end to end: the task dump, ``switchboard_tasks`` and the leak alarm on a real server."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from signaling.core.config import SessionConfig
from signaling.runtime.tasks import OwnerKind, TaskRegistry
from tests.conftest import UNIT, ServerFactory, eventually, make_config
from tests.raw import Raw

TOKEN = "a" * 32


async def _dump(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/admin/debug/tasks", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def test_dump_lists_connection_tasks_and_requires_the_token(start_server: ServerFactory) -> None:
    server = await start_server(make_config(admin_token=TOKEN))
    client = await Raw.joined(server.url, room="r1")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.http_url}/admin/debug/tasks") as r:
                assert r.status == 401
            body = await _dump(http, server.http_url)
            connection = [g for g in body["owners"] if g["kind"] == "connection"]
            names = {t["name"].split(":")[0] for g in connection for t in g["tasks"]}
            assert {"reader", "writer", "heartbeat"} <= names, body
            assert all(t["where"] != "-" and t["age_s"] >= 0 for g in connection for t in g["tasks"])
            assert body["by_kind"]["connection"] >= 3
            async with http.get(f"{server.http_url}/metrics") as r:
                text = await r.text()
            assert 'switchboard_tasks{owner="connection"}' in text
    finally:
        await client.close()


async def test_a_task_outliving_its_session_fires_the_alarm_naming_its_owner(start_server: ServerFactory) -> None:
    server = await start_server(make_config(
        admin_token=TOKEN,
        session=SessionConfig(grace_period=100 * UNIT, reconnecting_notice_after=10 * UNIT, leak_sample_interval=UNIT),
    ))
    client = await Raw.joined(server.url, room="r1")
    session = client.welcome["session"]
    # The injected leak: a task spawned for this session that nobody ends.
    leaky = TaskRegistry("injected-leak", OwnerKind.SESSION)
    leaky.spawn(asyncio.Event().wait(), name=f"forgotten:{session}", owner=f"session:{session}")
    try:
        await client.send({"type": "leave"})
        await client.closed()
        await eventually(lambda: server.hub.session_count == 0)
        await eventually(lambda: server.hub.leaks.alerts == 1, what="leak alarm")
        async with aiohttp.ClientSession() as http:
            body = await _dump(http, server.http_url)
        alert = body["leak_alarm"]["last_alert"]
        assert alert["owners"] == [{"owner": f"session:{session}", "tasks": 1}]
        assert any(t["name"] == f"forgotten:{session}" for t in alert["snapshot"])
        # logged once: more samples with the same leak raise no second alert
        samples = server.hub.leaks.alarm.samples
        await eventually(lambda: server.hub.leaks.alarm.samples >= samples + 5)
        assert server.hub.leaks.alerts == 1
    finally:
        await leaky.close()
        await client.close()
