"""Shared fixtures: real servers on loopback, time in one scaled unit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, settings

from signaling.core.config import (
    HeartbeatConfig,
    IceConfig,
    LimitsConfig,
    SecurityConfig,
    ServerConfig,
    SessionConfig,
)
from signaling.runtime.metrics import Metrics
from signaling.server.app import HUB, METRICS, build_app, listener, make_runner
from signaling.server.hub import Hub

# Re-exported: tests import the timing names from here (tests/support/timing.py holds them).
from tests.support.timing import PATIENCE as PATIENCE
from tests.support.timing import UNIT as UNIT
from tests.support.timing import eventually as eventually

# Hypothesis' per-example deadline and its "too slow" health check are wall-clock assertions: on a
# loaded machine they fail tests whose logic is fine. Property tests check properties, not speed.
settings.register_profile("switchboard", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("switchboard")



#: Every test peer is on loopback, which the SFU's candidate policy refuses by default.
LOOPBACK_PEERS = ("127.0.0.0/8",)


UNLIMITED = SecurityConfig(
    max_connections_per_ip=1_000_000,
    connection_rate_per_ip=1e9,
    connection_burst_per_ip=1e9,
    message_rate=1e9,
    message_burst=1e9,
    max_participants_per_room=100_000,
)


def make_config(**overrides: Any) -> ServerConfig:
    """A config with fast but safe timings for tests."""
    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        heartbeat=HeartbeatConfig(interval=20 * UNIT, timeout=60 * UNIT),
        session=SessionConfig(grace_period=100 * UNIT, reconnecting_notice_after=10 * UNIT),
        limits=LimitsConfig(join_timeout=100 * UNIT, close_timeout=20 * UNIT),
        # Every test client connects from 127.0.0.1: per-address limits would throttle the
        # tests themselves. tests/integration/test_security.py exercises each limit.
        security=UNLIMITED,
        ice=IceConfig(allow_peers=LOOPBACK_PEERS),
        sfu=False,
    )
    return replace(config, **overrides)


@dataclass
class RunningServer:
    url: str
    http_url: str
    app: web.Application
    runner: web.AppRunner

    @property
    def hub(self) -> Hub:
        return self.app[HUB]

    @property
    def metrics(self) -> Metrics:
        return self.app[METRICS]

    async def stop(self) -> None:
        await self.runner.cleanup()


ServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[ServerFactory]:
    started: list[RunningServer] = []

    async def start(config: ServerConfig | None = None, **kwargs: Any) -> RunningServer:
        config = config or make_config()
        app = build_app(config, **kwargs)
        runner = make_runner(app, config, shutdown_timeout=5 * UNIT)
        await runner.setup()
        # The listener `serve` uses: connections counted per address at accept time.
        site = listener(runner, config, "127.0.0.1", config.port)
        await site.start()
        port = runner.addresses[0][1]
        server = RunningServer(f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}", app, runner)
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def server(start_server: ServerFactory) -> RunningServer:
    return await start_server()


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (for subprocess servers)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


