"""A cluster node's shutdown has one deadline (``limits.shutdown_timeout``), however many
sessions it holds and however Redis behaves: with Redis stalled, ending sessions one after
another would take one Redis timeout each."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import replace

import pytest

from tests.backend.conftest import fast_backend
from tests.conftest import PATIENCE, UNIT, ServerFactory, make_config
from tests.raw import Raw

SESSIONS = 30


async def test_shutdown_with_redis_stalled_keeps_its_deadline(
    redis_factory, prefix: str, start_server: ServerFactory, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.WARNING, logger="signaling")
    base = make_config()
    # One Redis timeout (20 units) per session would add up to 600 units, far past PATIENCE.
    config = replace(base, node_id="sig-1", limits=replace(base.limits, shutdown_timeout=40 * UNIT))
    redis = redis_factory()
    server = await start_server(config, backend=fast_backend(redis.url, prefix))
    raws = [await Raw.joined(server.url, f"room-{i}", f"p{i}") for i in range(SESSIONS)]
    assert redis.proc is not None
    redis.proc.send_signal(signal.SIGSTOP)  # Redis stalls: every call waits for its timeout
    try:
        async with asyncio.timeout(PATIENCE):
            await server.hub.close()
    finally:
        redis.proc.send_signal(signal.SIGCONT)
        for raw in raws:
            await raw.close()
    assert any("sessions not ended" in r.getMessage() for r in caplog.records)
