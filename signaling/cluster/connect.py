"""The one way a process of the cluster connects to Redis: directly, or through Redis Sentinel.

Every Redis user (the backend, the session ledger, the node registry, ``RemoteMedia``, the SFU
node and its ``PeerSender``) builds its clients with :func:`make_client`, so a URL form accepted
here works everywhere, and every client has the same failure behaviour: bounded pool, no retries
of its own (a retried ``XADD`` whose reply was lost would deliver twice), every call bounded.

URL forms: see :mod:`signaling.core.redis_url` (``redis://``, ``rediss://``, ``unix://``,
``redis+sentinel://``).

Following a failover: a Sentinel client asks the sentinels for the primary's address whenever it
opens a connection; when that address changes, idle connections to the old primary are closed.
A write that reaches a demoted primary fails with ``READONLY``, which redis-py turns into a
connection error after dropping that connection, so the caller sees the same
:class:`~signaling.backend.base.BackendUnavailable` as for any outage and the next call asks the
sentinels again. While the sentinels have no primary to offer (between ``down-after-milliseconds``
and the end of the failover) every call fails fast with ``MasterNotFoundError``.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.retry import Retry

from signaling.core.redis_url import is_sentinel_url, parse_sentinel_url


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel-managed connections (re-resolve the primary) with a bounded pool that waits
    ``timeout`` for a free connection, like the direct clients."""


class SentinelRedis(Redis):
    """A client of the primary named by a Sentinel URL; closing it also closes its sentinel
    connections (redis-py leaves those to the caller)."""

    manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager, self.manager = self.manager, None
        if manager is not None:
            await manager.aclose()


def make_client(url: str, *, op_timeout: float, read_timeout: float | None = None, max_connections: int = 32) -> Redis:
    """A client whose calls fail fast instead of retrying on their own.

    Retries are off: a retried XADD whose reply was lost would deliver twice. The pool is bounded
    and waits at most ``op_timeout`` for a free connection. ``read_timeout`` (default
    ``op_timeout``) is the socket timeout: a client doing ``XREAD BLOCK`` needs more than that.
    With a ``redis+sentinel://`` URL the client talks to whichever server the sentinels name as
    primary (see the module docstring).
    """
    no_retry = Retry(NoBackoff(), 0)
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": read_timeout if read_timeout is not None else op_timeout,
        "socket_connect_timeout": op_timeout,
        "retry": no_retry,
    }
    if not is_sentinel_url(url):
        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=op_timeout, **common)
        return Redis.from_pool(pool)
    target = parse_sentinel_url(url)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels),
        sentinel_kwargs={
            "username": target.sentinel_username,
            "password": target.sentinel_password,
            "socket_timeout": op_timeout,
            "socket_connect_timeout": op_timeout,
            "retry": Retry(NoBackoff(), 0),
        },
    )
    client = sentinel.master_for(
        target.service,
        redis_class=SentinelRedis,
        connection_pool_class=_BlockingSentinelPool,
        db=target.db,
        username=target.username,
        password=target.password,
        max_connections=max_connections,
        timeout=op_timeout,
        **common,
    )
    assert isinstance(client, SentinelRedis)
    client.manager = sentinel
    return client
