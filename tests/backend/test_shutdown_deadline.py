"""A cluster node's shutdown has one deadline (``limits.shutdown_timeout``), however many
sessions it holds and however Redis behaves: the sessions are ended concurrently, so a stalled
Redis costs one Redis timeout in all, not one per session, and what the deadline cuts off is
abandoned with one warning."""

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
#: The backend's op_timeout in these tests (fast_backend): one stalled Redis call.
REDIS_TIMEOUT = 20 * UNIT


async def _close_with_redis_stalled(
    redis_factory, prefix: str, start_server: ServerFactory, shutdown_timeout: float  # type: ignore[no-untyped-def]
) -> None:
    base = make_config()
    config = replace(base, node_id="sig-1", limits=replace(base.limits, shutdown_timeout=shutdown_timeout))
    redis = redis_factory()
    server = await start_server(config, backend=fast_backend(redis.url, prefix, op_timeout=REDIS_TIMEOUT))
    raws = [await Raw.joined(server.url, f"room-{i}", f"p{i}") for i in range(SESSIONS)]
    assert server.hub.session_count == SESSIONS
    assert redis.proc is not None
    redis.proc.send_signal(signal.SIGSTOP)  # Redis stalls: every call waits for its timeout
    try:
        # One Redis timeout per session, in turn, would take SESSIONS * REDIS_TIMEOUT (30 s at
        # scale 1), past PATIENCE: only a shutdown under one deadline returns in time.
        async with asyncio.timeout(PATIENCE):
            await server.hub.close()
    finally:
        redis.proc.send_signal(signal.SIGCONT)
        for raw in raws:
            await raw.close()
    assert server.hub.session_count == 0


async def test_shutdown_with_redis_stalled_ends_sessions_concurrently(
    redis_factory, prefix: str, start_server: ServerFactory, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.WARNING, logger="signaling")
    # Room for a few Redis timeouts (a loaded machine lags), far from one per session: ended one
    # after another, more than 20 of the 30 would be cut off.
    await _close_with_redis_stalled(redis_factory, prefix, start_server, shutdown_timeout=8 * REDIS_TIMEOUT)
    messages = [r.getMessage() for r in caplog.records]
    # Every session's removal was tried and timed out once, side by side: none was cut off.
    assert sum("shutdown: could not remove" in m for m in messages) == SESSIONS, messages
    assert not any("sessions not ended" in m for m in messages), messages


async def test_shutdown_deadline_cuts_off_what_is_left(
    redis_factory, prefix: str, start_server: ServerFactory, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.WARNING, logger="signaling")
    # A deadline shorter than one Redis timeout: nothing can be removed in time.
    await _close_with_redis_stalled(redis_factory, prefix, start_server, shutdown_timeout=REDIS_TIMEOUT / 4)
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"{SESSIONS} of {SESSIONS} sessions not ended" in m for m in messages), messages
    assert not any("shutdown: could not remove" in m for m in messages), messages
