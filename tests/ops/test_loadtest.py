"""``switchboard loadtest``: a bounded run against a live node, and the loopback-only guard."""

from __future__ import annotations

import asyncio
import json
import random
import socket

import pytest

from signaling.tools.loadtest import (
    LoadConfig,
    LoadTest,
    PinnedResolver,
    Reservoir,
    TargetRefused,
    TargetUnresolvable,
    check_target,
    classify_failure,
    percentile,
)
from tests.conftest import PATIENCE, UNIT, RunningServer, ServerFactory, eventually, make_config

from .conftest import closed_port, invoke


def samples(server: RunningServer, metric: str) -> dict[str, float]:
    """``{type: value}`` of a labelled counter of the server (read from its registry)."""
    return {
        s.labels["type"]: s.value
        for family in server.metrics.registry.collect() if family.name == metric
        for s in family.samples if s.name.endswith("_total")
    }


async def test_200_participants_in_20_rooms(start_server: ServerFactory) -> None:
    server = await start_server(make_config())
    result = await invoke(
        "loadtest", "--url", server.url, "--participants", "200", "--rooms", "20",
        "--duration", "2", "--rate", "5", "--ramp", "1", "--seed", "7", "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["joined"] == 200 and summary["join_failed"] == 0
    assert summary["join_p50_ms"] is not None and summary["join_p50_ms"] <= summary["join_p99_ms"]
    # 200 participants at 5/s for 2 s is 2000 messages on an idle machine; the generator shares
    # its loop (and here the server's) with everything else, so how many it manages is a
    # measurement, not a guarantee: require real traffic, and exact accounting below.
    assert summary["sent"] > 0
    assert summary["received"] > 0
    assert summary["received"] == summary["sent"] and summary["unaccounted"] == 0
    assert summary["relay_p50_ms"] is not None and summary["relay_p50_ms"] <= summary["relay_p99_ms"]
    assert summary["received_per_s"] > 0
    assert summary["reconnects"] == 0 and summary["resumes"] == 0 and summary["errors"] == {}
    assert summary["timed_out"] is False
    # The server counted exactly what the load generator did.
    assert samples(server, "switchboard_messages_in")["signal"] == summary["sent"]
    assert samples(server, "switchboard_messages_in")["join"] == 200
    assert samples(server, "switchboard_messages_out")["signal"] == summary["received"]
    # Everyone left: the server read every leave, no session lingers in a grace period.
    await eventually(lambda: server.hub.connection_count == 0, what="every load-test connection closed")
    assert samples(server, "switchboard_messages_in")["leave"] == 200
    assert server.hub.session_count == 0


async def test_human_summary(start_server: ServerFactory) -> None:
    server = await start_server(make_config())
    result = await invoke("loadtest", "--url", server.url, "-n", "4", "-r", "2", "-d", "0.5", "--rate", "4", "--ramp", "0")
    assert result.exit_code == 0, result.output
    for label in ("joined", "4 (failed 0)", "join latency", "messages received", "relay latency", "errors"):
        assert label in result.stdout


@pytest.mark.parametrize("url", ["ws://192.0.2.1/ws", "ws://10.0.0.1:8080/ws", "ws://[2001:db8::1]/ws", "wss://0.0.0.0/ws"])
async def test_refuses_non_loopback_before_connecting(url: str) -> None:
    # 192.0.2.1 (TEST-NET-1) would hang a connection attempt; the refusal comes first.
    result = await invoke("loadtest", "--url", url, "-n", "1", "-r", "1", "-d", "1")
    assert result.exit_code == 2, result.output
    assert "not loopback" in result.output and "--allow-remote" in result.output


async def test_unreachable_exit_4() -> None:
    result = await invoke("loadtest", "--url", f"ws://127.0.0.1:{closed_port()}/ws", "-n", "1", "-r", "1", "-d", "1")
    assert result.exit_code == 4, result.output
    assert "cannot reach" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["-n", "5001"],
        ["-n", "0"],
        ["-n", "2", "-r", "3"],
        ["--rate", "51"],
        ["-d", "0"],
        ["--url", "http://127.0.0.1/ws"],
    ],
)
async def test_bounds_are_usage_errors(args: list[str]) -> None:
    result = await invoke("loadtest", "--url", f"ws://127.0.0.1:{closed_port()}/ws", *args)
    assert result.exit_code == 2, result.output


# -- the target guard, with a fake resolver ---------------------------------------------------


class FakeResolver:
    """A fake DNS: answers ``addresses`` for any name and records what was asked."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return self.addresses


def test_loopback_names_and_addresses_pass() -> None:
    assert check_target("ws://localhost:8080/ws", allow_remote=False, resolve=FakeResolver("127.0.0.1", "::1")) == ["127.0.0.1", "::1"]
    assert check_target("ws://127.8.9.10/ws", allow_remote=False, resolve=FakeResolver("127.8.9.10")) == ["127.8.9.10"]
    assert check_target("ws://[::1]:9/ws", allow_remote=False, resolve=FakeResolver("::1")) == ["::1"]


def test_a_name_with_any_remote_address_is_refused() -> None:
    with pytest.raises(TargetRefused, match=r"203\.0\.113\.5"):
        check_target("ws://sneaky.example/ws", allow_remote=False, resolve=FakeResolver("127.0.0.1", "203.0.113.5"))
    with pytest.raises(TargetRefused):
        check_target("ws://mapped.example/ws", allow_remote=False, resolve=FakeResolver("::ffff:127.0.0.1"))
    with pytest.raises(TargetUnresolvable):
        check_target("ws://nothing.example/ws", allow_remote=False, resolve=FakeResolver())


def test_allow_remote_does_not_even_resolve() -> None:
    resolve = FakeResolver("203.0.113.5")
    assert check_target("ws://far.example/ws", allow_remote=True, resolve=resolve) == []
    assert resolve.calls == []


def test_scheme_must_be_websocket() -> None:
    with pytest.raises(TargetRefused):
        check_target("http://127.0.0.1/ws", allow_remote=False, resolve=FakeResolver("127.0.0.1"))


async def test_pinned_resolver_answers_only_what_was_checked() -> None:
    pinned = PinnedResolver("localhost", ["127.0.0.1", "::1"])
    v4 = await pinned.resolve("localhost", 80, socket.AF_INET)
    assert [r["host"] for r in v4] == ["127.0.0.1"]
    both = await pinned.resolve("localhost", 80, socket.AF_UNSPEC)
    assert [r["host"] for r in both] == ["127.0.0.1", "::1"]
    with pytest.raises(OSError, match="not checked"):
        await pinned.resolve("elsewhere.example", 80, socket.AF_UNSPEC)


# -- numbers ----------------------------------------------------------------------------------------


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    random.Random(3).shuffle(values)
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 50) is None
    assert percentile([4.0], 99) == 4.0


def test_reservoir_is_bounded_and_counts_everything() -> None:
    r = Reservoir(size=100, rng=random.Random(5))
    for v in range(10_000):
        r.add(float(v))
    assert r.count == 10_000 and len(r.values) == 100
    p50 = r.percentile(50)
    assert p50 is not None and 2_500 < p50 < 7_500


def test_failure_keys_are_short() -> None:
    assert classify_failure("could not join: room-full: room r is full", 1000) == "room-full"
    assert classify_failure("connection failed: WSServerHandshakeError(..., status=429, message='x')") == "http-429"
    assert classify_failure("connection failed: ClientConnectorError(..., ConnectionRefusedError(111, 'Connect call failed'))") == "connect-refused"
    assert classify_failure("closed with 4013", 4013) == "close-4013"


def test_config_bounds() -> None:
    with pytest.raises(ValueError, match="participants"):
        LoadConfig(url="ws://127.0.0.1/ws", participants=5001, rooms=1, duration=1)
    config = LoadConfig(url="ws://127.0.0.1/ws", participants=10, rooms=2, duration=3, ramp=1, join_timeout=2)
    assert config.hard_deadline == 1 + 2 + 3 + config.settle + config.leave_timeout + 10


async def test_hard_deadline_cuts_the_run_and_leaves_nothing_behind(start_server: ServerFactory) -> None:
    server = await start_server(make_config())
    config = LoadConfig(url=server.url, participants=10, rooms=2, duration=60 * UNIT * 20, rate=5, deadline=20 * UNIT)
    loop = asyncio.get_running_loop()
    started = loop.time()
    summary = await LoadTest(config, ["127.0.0.1"]).run()
    assert summary.timed_out and not summary.ok
    assert loop.time() - started < 20 * UNIT + PATIENCE / 4
    assert summary.joined == 10 and summary.sent > 0
    # Every client the run opened was closed: the server sees no connection left.
    await eventually(lambda: server.hub.connection_count == 0, what="every load-test connection closed")
