"""Fixtures of the end-to-end media tests: a real server with its SFU, SDK + aiortc participants.

Loopback only: aioice's host gathering is restricted to 127.0.0.1 for the whole process (the
participants are plain aiortc), the server's SFU gathers on 127.0.0.1 through its own config,
and coturn (``coturn`` fixture, the test profile of tests/turn) listens and relays on 127.0.0.1.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from sfu import aiortc_hooks
from signaling.core.config import HeartbeatConfig, IceConfig, ServerConfig
from signaling.turn.coturn import Profile, render
from tests.conftest import LOOPBACK_PEERS, UNIT, RunningServer, ServerFactory, make_config
from tests.media.peers import LOOPBACK, Participant, Publisher, Subscriber
from tests.turn.conftest import Coturn, free_port, new_secret, run_coturn, settings_for

ADMIN_TOKEN = "media-tests-admin-token"


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    aiortc_hooks.set_process_host_addresses((LOOPBACK,))
    yield
    aiortc_hooks.set_process_host_addresses(None)


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect each test's aiortc garbage at its teardown, not at some later random point.

    When an asyncio task with an unretrieved exception is collected, asyncio logs it with a
    formatted traceback, and Python 3.11 formats tracebacks with ``ast.parse``. If that
    collection happens *inside* pytest's own ``ast.parse`` (building a failure report), the
    nested call breaks CPython 3.11.7's shared AST depth counter and pytest dies with
    INTERNALERROR "AST constructor recursion depth mismatch" (pytest-dev/pytest#10763,
    python/cpython#106905). aiortc leaves such a task behind when a second
    ``RTCPeerConnection.close()``, waiting for the first, is cancelled (``Sfu.close`` cancelling
    ``Sfu._on_pc_down`` does that); collecting here keeps it harmless.
    """
    yield
    gc.collect()


def media_config(ice: IceConfig | None = None, **overrides: Any) -> ServerConfig:
    """A test server with its in-process SFU on loopback.

    The heartbeat timeout is longer than the signaling tests' (3 s): aiortc encoding and
    decoding share the loop's machine with other suites, and a spurious dead-link resume would
    make the "no resume, no rejoin" assertions flaky.
    """
    return make_config(
        sfu=True,
        ice=ice or IceConfig(host_addresses=(LOOPBACK,), allow_peers=LOOPBACK_PEERS),
        heartbeat=HeartbeatConfig(interval=20 * UNIT, timeout=200 * UNIT),
        admin_token=ADMIN_TOKEN,
        **overrides,
    )


class Peers:
    """Creates started participants; closes every one of them at teardown."""

    def __init__(self) -> None:
        self._started: list[Participant] = []

    async def _start(self, participant: Participant) -> Any:
        self._started.append(participant)
        await participant.start()
        return participant

    async def publisher(self, server: RunningServer, room: str, name: str, **kwargs: Any) -> Publisher:
        result: Publisher = await self._start(Publisher(server.url, room, name, **kwargs))
        return result

    async def subscriber(self, server: RunningServer, room: str, name: str, **kwargs: Any) -> Subscriber:
        result: Subscriber = await self._start(Subscriber(server.url, room, name, **kwargs))
        return result

    async def close(self) -> None:
        errors: list[BaseException] = []
        for participant in reversed(self._started):
            try:
                await participant.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


MediaServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def media_server(start_server: ServerFactory) -> MediaServerFactory:
    async def start(ice: IceConfig | None = None, **overrides: Any) -> RunningServer:
        return await start_server(media_config(ice, **overrides))

    return start


@pytest.fixture
async def peers(start_server: ServerFactory) -> AsyncIterator[Peers]:
    # Depends on start_server so that participants close before the servers stop.
    registry = Peers()
    yield registry
    await registry.close()


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """coturn with the test profile (loopback peers allowed, relays on 127.0.0.1)."""
    running = Coturn(
        port=free_port(),
        tls_port=None,
        secrets=(new_secret(),),
        directory=tmp_path_factory.mktemp("coturn-media"),
    )
    with run_coturn(render(settings_for(Profile.TEST, running)), running) as ready:
        yield ready
