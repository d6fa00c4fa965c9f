"""The one stream reader (``signaling/cluster/redis_io.py``) on a real redis-server: it skips
what was there before it synced, reads in order, a failing entry costs only itself, and
``close`` ends the task within its deadline. (The backend's inbox, remote media's replies and
the SFU node's requests are this class; tests/cluster guards them end to end.)"""

from __future__ import annotations

import asyncio

from signaling.cluster.connect import make_client
from signaling.cluster.redis_io import StreamReader, append
from tests.backend.conftest import PATIENCE, UNIT, RedisServer
from tests.support.timing import eventually


async def test_entries_in_order_a_failing_one_skipped_and_close_bounded(redis_server: RedisServer, prefix: str) -> None:
    writer = make_client(redis_server.url, op_timeout=PATIENCE)
    reader_redis = make_client(redis_server.url, op_timeout=PATIENCE, read_timeout=2 * UNIT + PATIENCE, max_connections=1)
    key = f"{prefix}stream"
    got: list[str] = []

    async def handle(_entry_id: str, fields: dict[str, str]) -> None:
        if fields["m"] == "bad":
            raise ValueError("a malformed entry")
        got.append(fields["m"])

    await append(writer, key, "before", maxlen=100, ttl=60, op_timeout=PATIENCE, what="test")
    reader = StreamReader(reader_redis, key, handle, block=2 * UNIT, op_timeout=PATIENCE, name="test reader")
    try:
        await reader.sync_position()  # skips what was there before
        assert reader.healthy
        task = reader.start()
        for m in ("1", "bad", "2", "3"):
            await append(writer, key, m, maxlen=100, ttl=60, op_timeout=PATIENCE, what="test")
        await eventually(lambda: got == ["1", "2", "3"], what="entries after the failing one")
        loop = asyncio.get_running_loop()
        began = loop.time()
        await reader.close(PATIENCE)
        assert task.done() and loop.time() - began < PATIENCE
        assert not reader.healthy
    finally:
        await reader.close(PATIENCE)
        await reader_redis.aclose()
        await writer.aclose()
