"""Loopback-only networking for every aiortc peer created by the SFU tests.

The SFU under test is configured per instance (``SfuConfig.host_addresses``); the client peers
the tests create are plain aiortc, so their gathering is restricted for the whole process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from sfu import aiortc_hooks
from tests.sfu.sfu_testpeers import LOOPBACK, SfuEnv


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    aiortc_hooks.set_process_host_addresses(LOOPBACK)
    yield
    aiortc_hooks.set_process_host_addresses(None)


@pytest.fixture
async def env() -> AsyncIterator[SfuEnv]:
    environment = SfuEnv()
    try:
        yield environment
    finally:
        await environment.close()
