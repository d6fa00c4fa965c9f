"""Fixtures of the media SDK tests: a real server with its in-process SFU on loopback.

The SDK's rooms gather ICE candidates on 127.0.0.1 through ``IceOptions`` (per connection), the
SFU through its own config; the example bots run as separate processes, like a user runs them.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from switchboard import IceOptions
from tests.conftest import RunningServer, ServerFactory
from tests.media.conftest import media_config
from tests.sdk.bots import Bot

LOOPBACK_ICE = IceOptions(host_addresses=("127.0.0.1",))


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect aiortc's garbage at each test's teardown (see tests/media/conftest.py)."""
    yield
    gc.collect()


@pytest.fixture
async def sdk_server(start_server: ServerFactory) -> RunningServer:
    return await start_server(media_config())


@pytest.fixture
async def bots(start_server: ServerFactory) -> AsyncIterator[Callable[..., Awaitable[Bot]]]:
    """Start example bots; every one is stopped at teardown."""
    started: list[Bot] = []

    async def start(script: str, *args: str) -> Bot:
        bot = Bot(script, *args)
        started.append(bot)
        return await bot.start()

    yield start
    for bot in reversed(started):
        await bot.stop()
