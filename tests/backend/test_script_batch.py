"""Script calls travel in pipelines (``signaling/cluster/batch.py``) without changing what they do.

Real redis-server (the session fixture). A script that increments a counter and returns the new
value shows each call ran exactly once and got its own reply, also when Redis lost its script
cache (``SCRIPT FLUSH``: the calls answered ``NOSCRIPT`` did not run, and run once after the
reload).
"""

from __future__ import annotations

import asyncio

from signaling.backend.base import BackendUnavailable
from signaling.cluster.batch import ScriptBatcher, run_scripts
from signaling.cluster.connect import make_client
from signaling.runtime.tasks import OwnerKind, TaskRegistry
from tests.backend.conftest import RedisServer

_COUNT = """
local n = redis.call('INCR', KEYS[1])
if ARGV[1] == 'fail' then return redis.error_reply('asked to fail') end
return {n, ARGV[1]}
"""


async def test_concurrent_calls_share_pipelines_and_each_runs_once(
    redis_server: RedisServer, prefix: str
) -> None:
    redis = make_client(redis_server.url, op_timeout=5.0)
    tasks = TaskRegistry("batch-test", OwnerKind.BACKEND)
    key = f"{prefix}count"
    script = redis.register_script(_COUNT)
    batcher = ScriptBatcher(redis, script, tasks, durable=None, seconds=5.0, what="count")
    try:
        replies = await asyncio.gather(*(batcher.call([key], [str(i)]) for i in range(200)))
        assert [r[1] for r in replies] == [str(i) for i in range(200)]
        assert sorted(int(r[0]) for r in replies) == list(range(1, 201))
        assert int(await redis.get(key)) == 200
        assert batcher.calls == 200
        assert batcher.batches < 200, "concurrent calls were not batched"

        # One call failing in Redis fails alone; the others of its pipeline get their replies.
        results = await asyncio.gather(
            batcher.call([key], ["a"]), batcher.call([key], ["fail"]), batcher.call([key], ["b"]),
            return_exceptions=True,
        )
        assert isinstance(results[1], BackendUnavailable)
        assert [r[1] for r in (results[0], results[2])] == ["a", "b"]  # type: ignore[index]
        assert int(await redis.get(key)) == 203
    finally:
        await tasks.close()
        await redis.delete(key)
        await redis.aclose()


async def test_calls_survive_a_lost_script_cache_exactly_once(
    redis_server: RedisServer, prefix: str
) -> None:
    redis = make_client(redis_server.url, op_timeout=5.0)
    key = f"{prefix}count"
    script = redis.register_script(_COUNT)
    try:
        await redis.script_flush()
        replies = await run_scripts(
            redis, [(script, [key], [str(i)]) for i in range(10)], durable=None, seconds=5.0,
            what="count",
        )
        assert [int(r[0]) for r in replies] == list(range(1, 11))
        assert int(await redis.get(key)) == 10
    finally:
        await redis.delete(key)
        await redis.aclose()
