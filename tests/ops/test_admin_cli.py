"""``switchboard admin …`` against a live node on loopback (and the pure metrics summary)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from aiohttp import web

from signaling.client import Client, Closed, Event, Reconnecting, SignalReceived
from signaling.server.app import DRAIN_REQUESTED
from signaling.tools.admin_cli import Exit, histogram_quantile, segment, summarise_metrics
from tests.conftest import (
    PATIENCE,
    UNLIMITED,
    RunningServer,
    ServerFactory,
    eventually,
    make_config,
)

from .conftest import TOKEN, admin_cmd, closed_port, invoke


@asynccontextmanager
async def clients(server: RunningServer, *rooms_and_names: tuple[str, str]) -> AsyncIterator[list[Client]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(Client(server.url, room, name=name)) for room, name in rooms_and_names]


async def events_until_closed(client: Client) -> list[Event]:
    seen: list[Event] = []
    async with asyncio.timeout(PATIENCE):
        async for event in client:
            seen.append(event)
    assert isinstance(seen[-1], Closed)
    return seen


# -- reading --------------------------------------------------------------------------------------


async def test_info_table_and_json(admin_server: RunningServer) -> None:
    async with clients(admin_server, ("lobby", "alice")):
        table = await admin_cmd(admin_server, "info")
        assert table.exit_code == 0, table.output
        assert "node-1" in table.stdout and "sessions" in table.stdout and "draining" in table.stdout
        as_json = await admin_cmd(admin_server, "info", "--json")
        assert as_json.exit_code == 0, as_json.output
        data = json.loads(as_json.stdout)
        assert data["node"] == "node-1"
        assert data["draining"] is False
        assert data["sessions"] == 1 and data["connections"] == 1
        # --json is accepted before the command as well.
        assert json.loads((await admin_cmd(admin_server, "--json", "info")).stdout) == data


async def test_flags_instead_of_environment(admin_server: RunningServer) -> None:
    result = await invoke("admin", "--url", admin_server.http_url, "--token", TOKEN, "nodes", "list", "--json")
    assert result.exit_code == 0, result.output
    nodes = json.loads(result.stdout)["nodes"]
    assert [n["node"] for n in nodes] == ["node-1"]
    assert nodes[0]["draining"] is False


async def test_rooms_list_show_and_participants(admin_server: RunningServer) -> None:
    async with clients(admin_server, ("red", "alice"), ("red", "bob"), ("blue:1@x", "carol")) as (alice, bob, carol):
        listed = await admin_cmd(admin_server, "rooms", "list", "--json")
        assert listed.exit_code == 0, listed.output
        assert json.loads(listed.stdout) == {
            "rooms": [{"room": "blue:1@x", "participants": 1}, {"room": "red", "participants": 2}]
        }
        table = await admin_cmd(admin_server, "rooms", "list")
        assert "red" in table.stdout and "blue:1@x" in table.stdout and "2 rooms" in table.stdout

        shown = await admin_cmd(admin_server, "rooms", "show", "red")
        assert shown.exit_code == 0, shown.output
        assert alice.peer_id is not None and bob.peer_id is not None
        assert alice.peer_id in shown.stdout and bob.peer_id in shown.stdout
        assert "alice" in shown.stdout and "bob" in shown.stdout and "carol" not in shown.stdout
        # A room name with reserved URL characters travels as one path segment.
        odd = json.loads((await admin_cmd(admin_server, "rooms", "show", "blue:1@x", "--json")).stdout)
        assert odd == {"room": "blue:1@x", "participants": [{"peer": carol.peer_id, "name": "carol", "node": "node-1"}]}

        people = await admin_cmd(admin_server, "participants", "list", "red", "--json")
        assert people.exit_code == 0, people.output
        rows = {p["peer"]: p for p in json.loads(people.stdout)["participants"]}
        assert set(rows) == {alice.peer_id, bob.peer_id}
        assert rows[alice.peer_id]["session"] == alice.session_id
        assert rows[alice.peer_id]["state"] == "attached"
        people_table = await admin_cmd(admin_server, "participants", "list", "red")
        assert alice.session_id is not None and alice.session_id in people_table.stdout


async def test_names_are_shown_verbatim_never_as_markup(admin_server: RunningServer) -> None:
    """Participants choose their names: ``[/]`` once crashed the table (rich markup), and
    ``[link=...]`` or ``[red]`` must not style it either."""
    names = ["[/]", "[bold]x[/bold]", "[link=https://evil.example]y", "z\\[/]"]
    async with clients(admin_server, *(("odd", name) for name in names)):
        for args in (("participants", "list", "odd"), ("rooms", "show", "odd"), ("sessions", "list")):
            result = await admin_cmd(admin_server, *args)
            assert result.exit_code == 0, (args, result.output)
            for name in names:
                assert name in result.stdout, (args, name, result.stdout)


async def test_unknown_room_and_peer_exit_1(admin_server: RunningServer) -> None:
    for args in (("rooms", "show", "nowhere"), ("participants", "list", "nowhere"),
                 ("participants", "kick", "p_nobody"), ("sessions", "disconnect", "s_nothing")):
        result = await admin_cmd(admin_server, *args)
        assert result.exit_code == Exit.NOT_FOUND, (args, result.output)
        assert result.stderr.startswith("error: no such"), result.stderr
        assert result.stdout == ""


async def test_sessions_list_and_disconnect_resumes(admin_server: RunningServer) -> None:
    async with clients(admin_server, ("r", "dora")) as (dora,):
        listed = json.loads((await admin_cmd(admin_server, "sessions", "list", "--json")).stdout)["sessions"]
        assert [(s["session"], s["peer"], s["room"], s["state"]) for s in listed] == [
            (dora.session_id, dora.peer_id, "r", "attached")
        ]
        table = await admin_cmd(admin_server, "sessions", "list")
        assert dora.session_id is not None and dora.session_id in table.stdout and table.stdout.split()[:2] == ["1", "session"]
        result = await admin_cmd(admin_server, "sessions", "disconnect", dora.session_id)
        assert result.exit_code == 0, result.output
        await eventually(lambda: dora.resumes == 1, what="the client resumed")


async def test_debug_tasks_lists_owners_and_the_leak_alarm(admin_server: RunningServer) -> None:
    async with clients(admin_server, ("r", "gus")):
        result = await admin_cmd(admin_server, "debug", "tasks", "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        kinds = {group["kind"] for group in data["owners"]}
        assert "connection" in kinds, data
        assert data["by_kind"]["connection"] >= 3  # reader, writer, heartbeat (and the handler)
        assert data["leak_alarm"]["alerts"] == 0 and data["leak_alarm"]["last_alert"] is None
        table = await admin_cmd(admin_server, "debug", "tasks")
        assert table.exit_code == 0, table.output
        assert "connection:127.0.0.1" in table.stdout and "leak alarm" in table.stdout
        assert "_write_loop" in table.stdout, table.stdout  # where the writer waits


# -- acting ---------------------------------------------------------------------------------------


async def test_kick_closes_client_4006_and_it_does_not_reconnect(admin_server: RunningServer) -> None:
    async with clients(admin_server, ("r", "eve"), ("r", "frank")) as (eve, frank):
        assert eve.peer_id is not None
        result = await admin_cmd(admin_server, "participants", "kick", eve.peer_id, "--reason", "spam")
        assert result.exit_code == 0, result.output
        assert f"kicked {eve.peer_id}" in result.stdout
        async with asyncio.timeout(PATIENCE):
            await eve.closed.wait()
        assert eve.close_code == 4006
        seen = await events_until_closed(eve)
        assert not any(isinstance(e, Reconnecting) for e in seen)
        last = seen[-1]
        assert isinstance(last, Closed) and last.code == 4006 and "spam" in last.reason
        await eventually(lambda: admin_server.hub.session_count == 1, what="the kicked session ended")
        assert not frank.closed.is_set()


async def test_close_room_kicks_everyone_in_it(admin_server: RunningServer) -> None:
    async with clients(admin_server, ("doomed", "a"), ("doomed", "b"), ("safe", "c")) as (a, b, c):
        result = await admin_cmd(admin_server, "rooms", "close", "doomed", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"closed": 2}
        async with asyncio.timeout(PATIENCE):
            await asyncio.gather(a.closed.wait(), b.closed.wait())
        assert (a.close_code, b.close_code) == (4006, 4006)
        assert not c.closed.is_set()
        again = await admin_cmd(admin_server, "rooms", "close", "doomed")
        assert again.exit_code == 0 and "0 participants" in again.stdout


async def test_drain_asks_first_then_drains(admin_server: RunningServer) -> None:
    drain = admin_server.app[DRAIN_REQUESTED]
    refused = await admin_cmd(admin_server, "nodes", "drain", stdin="n\n")
    assert refused.exit_code == Exit.USAGE, refused.output
    assert "not confirmed" in refused.stderr
    wrong = await admin_cmd(admin_server, "nodes", "drain", "node-9", "--yes")
    assert wrong.exit_code == Exit.NOT_FOUND and "node-1" in wrong.stderr
    assert not drain.is_set()
    done = await admin_cmd(admin_server, "nodes", "drain", "node-1", "--yes", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"node": "node-1", "draining": True}
    assert drain.is_set()


async def test_stats_agree_with_the_servers_metrics(admin_server: RunningServer) -> None:
    async with clients(admin_server, ("s", "gil"), ("s", "hal")) as (gil, hal):
        assert hal.peer_id is not None
        for n in range(7):
            await gil.signal(hal.peer_id, {"n": n})
        async with asyncio.timeout(PATIENCE):
            got = 0
            while got < 7:
                got += isinstance(await hal.next_event(), SignalReceived)
        await eventually(lambda: all(live.rtt is not None for live in admin_server.hub.sessions()),
                         what="a pong from each client")
        result = await admin_cmd(admin_server, "stats", "--json")
        assert result.exit_code == 0, result.output
        stats = json.loads(result.stdout)
        assert stats["sessions"] == 2 and stats["sessions_attached"] == 2 and stats["connections"] == 2
        assert stats["rooms"] == 1
        assert stats["messages_in_by_type"]["signal"] == 7
        assert stats["messages_in_by_type"]["join"] == 2
        assert stats["messages_out_by_type"]["signal"] == 7
        assert stats["rtt_samples"] >= 2
        assert stats["rtt_p50_ms"] is not None and 0 < stats["rtt_p50_ms"] < 5000
        assert stats["resumes"] == 0 and stats["heartbeat_timeouts"] == 0
        # /metrics is public: stats needs no token.
        table = await invoke("admin", "--url", admin_server.http_url, "stats")
        assert table.exit_code == 0, table.output
        assert "messages in" in table.stdout and "rtt p50 (ms)" in table.stdout


# -- failures -------------------------------------------------------------------------------------


async def test_wrong_token_exit_3_with_one_clear_line(admin_server: RunningServer) -> None:
    result = await admin_cmd(admin_server, "rooms", "list", token="not-the-token")
    assert result.exit_code == Exit.UNAUTHORIZED
    assert result.stderr.count("\n") == 1 and "unauthorized" in result.stderr
    assert "not-the-token" not in result.output
    assert result.stdout == ""


async def test_server_without_admin_token_exit_1(start_server: ServerFactory) -> None:
    server = await start_server(make_config())
    result = await admin_cmd(server, "info")
    assert result.exit_code == Exit.NOT_FOUND
    assert "no admin API" in result.stderr and "--admin-token" in result.stderr


async def test_unreachable_exit_4() -> None:
    env = {"SWITCHBOARD_ADMIN_URL": f"http://127.0.0.1:{closed_port()}", "SWITCHBOARD_ADMIN_TOKEN": TOKEN}
    for args in (("info",), ("stats",)):
        result = await invoke("admin", *args, env=env)
        assert result.exit_code == Exit.UNREACHABLE, result.output
        assert result.stderr.startswith("error: cannot reach") and result.stderr.count("\n") == 1


async def test_usage_errors_exit_2(admin_server: RunningServer) -> None:
    no_token = await invoke("admin", "info", env={"SWITCHBOARD_ADMIN_URL": admin_server.http_url})
    assert no_token.exit_code == Exit.USAGE and "SWITCHBOARD_ADMIN_TOKEN" in no_token.output
    bad_url = await invoke("admin", "--url", "ftp://example.org", "--token", TOKEN, "info")
    assert bad_url.exit_code == Exit.USAGE and "--url" in bad_url.output
    missing_arg = await admin_cmd(admin_server, "rooms", "show")
    assert missing_arg.exit_code == Exit.USAGE


async def test_server_error_exit_5() -> None:
    async def broken(_request: web.Request) -> web.Response:
        return web.json_response({"error": "database on fire"}, status=500)

    async def not_json(_request: web.Request) -> web.Response:
        return web.Response(text="<html>proxy</html>")

    app = web.Application()
    app.router.add_get("/admin/info", broken)
    app.router.add_get("/admin/rooms", not_json)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        env = {"SWITCHBOARD_ADMIN_URL": f"http://127.0.0.1:{runner.addresses[0][1]}", "SWITCHBOARD_ADMIN_TOKEN": TOKEN}
        failed = await invoke("admin", "info", env=env)
        assert failed.exit_code == Exit.SERVER_ERROR
        assert "HTTP 500" in failed.stderr and "database on fire" in failed.stderr
        garbled = await invoke("admin", "rooms", "list", env=env)
        assert garbled.exit_code == Exit.SERVER_ERROR and "not JSON" in garbled.stderr
    finally:
        await runner.cleanup()


# -- pure parts -----------------------------------------------------------------------------------

METRICS = """\
# TYPE switchboard_connections gauge
switchboard_connections 3.0
# TYPE switchboard_sessions gauge
switchboard_sessions{state="attached"} 3.0
switchboard_sessions{state="detached"} 1.0
# TYPE switchboard_messages_in counter
switchboard_messages_in_total{type="signal"} 10.0
switchboard_messages_in_total{type="pong"} 5.0
# TYPE switchboard_messages_out counter
switchboard_messages_out_total{type="signal"} 9.0
# TYPE switchboard_resume_failures counter
switchboard_resume_failures_total{reason="unknown"} 2.0
# TYPE switchboard_rtt_seconds histogram
switchboard_rtt_seconds_bucket{le="0.001"} 0.0
switchboard_rtt_seconds_bucket{le="0.01"} 4.0
switchboard_rtt_seconds_bucket{le="0.1"} 8.0
switchboard_rtt_seconds_bucket{le="+Inf"} 8.0
switchboard_rtt_seconds_count 8.0
switchboard_rtt_seconds_sum 0.2
"""


def test_summarise_metrics() -> None:
    s = summarise_metrics(METRICS)
    assert (s.sessions, s.sessions_attached, s.sessions_detached, s.connections) == (4, 3, 1, 3)
    assert (s.messages_in, s.messages_out) == (15, 9)
    assert s.messages_in_by_type == {"signal": 10, "pong": 5}
    assert s.resume_failures == 2 and s.resumes == 0
    # Half of 8 observations is 4, reached exactly at the 0.01 bound.
    assert s.rtt_p50_ms == 10.0 and s.rtt_samples == 8


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, [], None),
        (0.5, [(0.1, 0.0), (float("inf"), 0.0)], None),
        (0.5, [(0.1, 2.0), (0.2, 4.0), (float("inf"), 4.0)], 0.1),
        (0.75, [(0.1, 2.0), (0.2, 4.0), (float("inf"), 4.0)], 0.15),
        (0.5, [(1.0, 0.0), (float("inf"), 2.0)], 1.0),
    ],
)
def test_histogram_quantile(q: float, buckets: list[tuple[float, float]], expected: float | None) -> None:
    result = histogram_quantile(q, buckets)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_path_segments_are_encoded() -> None:
    assert segment("a:b@c+d") == "a%3Ab%40c%2Bd"
    assert segment("..") == "%2E%2E"
    assert segment("x/y") == "x%2Fy"


async def test_stats_with_a_metrics_token(start_server: ServerFactory) -> None:
    security = dataclasses.replace(UNLIMITED, metrics_token="metrics-token-3b1f")
    server = await start_server(make_config(admin_token=TOKEN, security=security))
    refused = await admin_cmd(server, "stats")
    assert refused.exit_code == Exit.UNAUTHORIZED, refused.output
    env = {"SWITCHBOARD_ADMIN_URL": server.http_url, "SWITCHBOARD_SECURITY_METRICS_TOKEN": "metrics-token-3b1f"}
    ok = await invoke("admin", "stats", "--json", env=env)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["sessions"] == 0
