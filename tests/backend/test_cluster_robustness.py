"""A cluster node survives what one session's traffic carries, and Redis outages (issue 14).

Real redis-server, real hub and WebSockets on loopback. Each test watches *bystanders*: sessions
that did nothing wrong must keep receiving.
"""

from __future__ import annotations

from dataclasses import replace

import aiohttp

from signaling.config import ServerConfig
from tests.backend.conftest import RedisServer, fast_backend
from tests.conftest import RunningServer, ServerFactory, make_config
from tests.raw import Raw


def node_config(node_id: str) -> ServerConfig:
    return replace(make_config(), node_id=node_id)


async def _relays(sender: Raw, receiver: Raw, n: int) -> None:
    await sender.send({"type": "signal", "to": receiver.peer, "data": {"n": n}, "cseq": n})
    got = await receiver.expect("signal")
    assert got["data"] == {"n": n} and got["from"] == sender.peer


async def _ready(server: RunningServer) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{server.http_url}/readyz") as resp:
        return resp.status


async def test_an_unencodable_frame_ends_one_session_and_the_ledger_writer_serves_everyone_else(
    redis_server: RedisServer, prefix: str, start_server: ServerFactory
) -> None:
    """A message carrying a lone surrogate reaches a session through the backend (the path a
    relayed signal takes). Its frame cannot be stored as UTF-8: that session is told and closed
    4011 (rejoin), its room hears peer-left; the node's ledger writer goes on, so the other
    sessions of the node, in this room and another, keep receiving, and /readyz stays 200."""
    node = await start_server(node_config("sig-1"), backend=fast_backend(redis_server.url, prefix))
    victim = await Raw.joined(node.url, "target", "victim")
    neighbour = await Raw.joined(node.url, "target", "neighbour")
    alice = await Raw.joined(node.url, "elsewhere", "alice")
    bob = await Raw.joined(node.url, "elsewhere", "bob")
    try:
        await victim.expect("peer-joined")
        await alice.expect("peer-joined")
        await _relays(alice, bob, 1)

        poison = {"type": "signal", "from": neighbour.peer, "data": "\ud800"}
        assert await node.hub.backend.send(victim.peer, poison)

        error = await victim.expect("error")
        assert error["code"] == "internal"
        assert await victim.closed() == 4011
        left = await neighbour.expect("peer-left")
        assert left == {**left, "peer": victim.peer, "reason": "internal-error"}
        # The writer lives: every other session of the node still gets its frames.
        for n in range(2, 12):
            await _relays(alice, bob, n)
            await _relays(bob, alice, n)
        await neighbour.send({"type": "signal", "to": alice.peer, "data": {}, "cseq": 1})
        assert (await neighbour.expect("error"))["code"] == "unknown-peer"  # another room
        assert await _ready(node) == 200
    finally:
        for raw in (victim, neighbour, alice, bob):
            await raw.close()


async def test_the_ledger_reports_a_writer_that_cannot_write(
    redis_factory, prefix: str, redis_backends  # type: ignore[no-untyped-def]
) -> None:
    """``working()`` (and with it /readyz) is False while queued writes cannot reach Redis."""
    from tests.backend.conftest import Inbox, wait_for

    redis = redis_factory()
    backend = redis_backends(redis.url, prefix)
    await backend.start("sig-1", Inbox())
    ledger = backend.session_ledger()
    assert ledger is not None and ledger.working()
    redis.kill()
    assert ledger.frames("s1", meta="{}", tok="t", frames=[(1, "{}")], last_cseq=0, acked=0)
    await wait_for(lambda: not ledger.working(), what="the ledger to report it cannot write")
    assert not await backend.ready()
    redis.start()
    await wait_for(ledger.working, what="the ledger to write again")
    await wait_for(backend.ready, what="the backend to be ready again")
