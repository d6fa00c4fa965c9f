"""Several RedisBackend nodes on one real Redis: cross-node delivery, partitions, restarts, reaping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from signaling.backend import Member
from signaling.cluster.redis_backend import BackendUnavailable, RedisBackend
from tests.backend.conftest import Inbox, RedisServer, wait_for
from tests.faultproxy import FaultProxy

Make = Callable[..., RedisBackend]


@pytest.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[FaultProxy]:
    p = await FaultProxy(redis_server.port).start()
    yield p
    await p.close()


async def two_nodes(make: Make, url: str, prefix: str, url_b: str | None = None) -> tuple[RedisBackend, Inbox, RedisBackend, Inbox]:
    a, b = make(url, prefix), make(url_b or url, prefix)
    inbox_a, inbox_b = Inbox(), Inbox()
    await a.start("node-a", inbox_a)
    await b.start("node-b", inbox_b)
    assert await a.add_member(Member("alice", "Alice", "room", "node-a")) == []
    assert await b.add_member(Member("bob", "Bob", "room", "node-b")) == [Member("alice", "Alice", "room", "node-a")]
    return a, inbox_a, b, inbox_b


async def test_a_room_spans_two_nodes(redis_server: RedisServer, prefix: str, redis_backends: Make) -> None:
    a, _, b, _ = await two_nodes(redis_backends, redis_server.url, prefix)
    both = [Member("alice", "Alice", "room", "node-a"), Member("bob", "Bob", "room", "node-b")]
    assert await a.members("room") == both
    assert await b.members("room") == both
    assert await a.member("bob") == both[1]
    assert await b.rooms() == {"room": 2}
    # A node removes only members it holds: one whose session resumed elsewhere has moved on.
    assert await b.remove_member("room", "alice") is None
    assert await a.members("room") == both
    assert await a.remove_member("room", "alice") == [both[1]]
    assert await a.members("room") == [both[1]]


async def test_cross_node_delivery_is_in_order_and_exactly_once(redis_server: RedisServer, prefix: str, redis_backends: Make) -> None:
    a, inbox_a, b, inbox_b = await two_nodes(redis_backends, redis_server.url, prefix)
    for n in range(1000):
        assert await a.send("bob", {"type": "signal", "n": n})
    assert await b.send("alice", {"type": "signal", "n": "back"})
    # A marker sent after the 1,000: once it is in, anything duplicated would be in too.
    assert await a.send("bob", {"type": "marker"})
    await inbox_b.until(lambda: any(m["type"] == "marker" for m in inbox_b.of("bob")), what="1,000 messages + marker")
    got = inbox_b.of("bob")
    assert [m["n"] for m in got[:-1]] == list(range(1000))
    assert len(got) == 1001
    await inbox_a.until(lambda: len(inbox_a.got) == 1)
    assert inbox_a.got == [("alice", {"type": "signal", "n": "back"})]


async def test_send_to_a_peer_that_left_another_node_is_false(redis_server: RedisServer, prefix: str, redis_backends: Make) -> None:
    a, _, b, _ = await two_nodes(redis_backends, redis_server.url, prefix)
    assert await b.remove_member("room", "bob") == [Member("alice", "Alice", "room", "node-a")]
    assert await a.send("bob", {"type": "x"}) is False


async def test_a_cut_off_node_is_not_ready_and_reads_its_inbox_after_reconnecting(
    redis_server: RedisServer, prefix: str, redis_backends: Make, proxy: FaultProxy
) -> None:
    """Entries appended while node B cannot reach Redis are delivered once it can: in order, once."""
    a, _, b, inbox_b = await two_nodes(redis_backends, redis_server.url, prefix, url_b=f"redis://127.0.0.1:{proxy.port}/0")
    assert await a.send("bob", {"n": -1})
    await inbox_b.until(lambda: len(inbox_b.got) == 1)
    # timeline: B's path to Redis goes half-open, its connections are reset.
    proxy.blackhole(True)
    proxy.cut()
    await wait_for(lambda: _not(b.ready()), what="node B not ready")
    with pytest.raises(BackendUnavailable):
        await b.send("alice", {"n": "lost"})
    for n in range(100):
        assert await a.send("bob", {"n": n})  # Redis holds them in B's inbox
    # timeline: the path heals; B resyncs and catches up from its last id.
    proxy.blackhole(False)
    await inbox_b.until(lambda: len(inbox_b.got) == 101, what="the backlog")
    assert [m["n"] for _, m in inbox_b.got] == list(range(-1, 100))
    await wait_for(b.ready, what="node B ready again")
    assert await b.send("alice", {"n": "after"})


async def test_redis_restart_is_survived_without_recreating_backends(
    redis_factory: Callable[[], RedisServer], prefix: str, redis_backends: Make
) -> None:
    server = redis_factory()
    a, inbox_a, b, inbox_b = await two_nodes(redis_backends, server.url, prefix)
    assert await a.send("bob", {"n": 0})
    await inbox_b.until(lambda: len(inbox_b.got) == 1)
    # timeline: Redis crashes; every key is gone (no persistence).
    server.kill()
    await wait_for(lambda: _not(a.ready()), what="node A not ready")
    await wait_for(lambda: _not(b.ready()), what="node B not ready")
    with pytest.raises(BackendUnavailable):
        await a.send("bob", {"n": "lost"})
    # timeline: Redis is back on the same port, empty.
    server.start()
    await wait_for(a.ready, what="node A ready again")
    await wait_for(b.ready, what="node B ready again")
    # Both nodes re-asserted the members they hold: the room is whole again.
    assert await a.members("room") == [Member("alice", "Alice", "room", "node-a"), Member("bob", "Bob", "room", "node-b")]
    for n in range(1, 51):
        assert await a.send("bob", {"n": n})
    assert await b.send("alice", {"n": "back"})
    await inbox_b.until(lambda: len(inbox_b.got) == 51, what="delivery after the restart")
    assert [m["n"] for _, m in inbox_b.got] == list(range(51))
    await inbox_a.until(lambda: len(inbox_a.got) == 1)


async def test_data_lost_behind_a_healthy_connection_is_restored(redis_server: RedisServer, prefix: str, redis_backends: Make) -> None:
    """Redis restarted (or failed over) between two calls: no call failed, yet every key is gone."""
    import redis.asyncio as aioredis

    a, _, _b, inbox_b = await two_nodes(redis_backends, redis_server.url, prefix)
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        await client.delete(*keys)
    finally:
        await client.aclose()
    # Each node notices its alive key is gone at its next refresh and writes its members back; a
    # read meanwhile waits for that resync (bounded) instead of answering with an empty room.
    assert [m.peer_id for m in await a.members("room")] == ["alice", "bob"]
    await wait_for(lambda: _members_are(a, ["alice", "bob"]), what="both members restored")
    assert await a.send("bob", {"n": 1})
    await inbox_b.until(lambda: len(inbox_b.got) == 1)


async def test_a_dead_node_is_reaped_and_a_returning_one_is_fenced(
    redis_server: RedisServer, prefix: str, redis_backends: Make, proxy: FaultProxy
) -> None:
    """A node cut off past its alive TTL is reaped (its rooms are told). When it comes back it
    must not write those members back as if nothing happened (split brain): it learns it was
    reaped and hands their peer ids to its hub, which ends those sessions."""
    a, _, b, inbox_b = await two_nodes(redis_backends, redis_server.url, prefix, url_b=f"redis://127.0.0.1:{proxy.port}/0")
    fenced: list[dict[str, str]] = []

    async def control(fields: dict[str, str]) -> None:
        fenced.append(fields)

    b.control = control
    await b.add_member(Member("bea", "Bea", "solo", "node-b"))
    assert await a.reap() == []  # every node alive: nothing to do
    proxy.blackhole(True)
    proxy.cut()

    gone: list[Member] = []

    async def b_reaped() -> bool:
        gone.extend(await a.reap())
        return bool(gone)

    await wait_for(b_reaped, what="node B's members reaped after its alive TTL")
    assert sorted(x.peer_id for x in gone) == ["bea", "bob"]
    assert await a.members("room") == [Member("alice", "Alice", "room", "node-a")]
    assert await a.rooms() == {"room": 1}
    assert await a.send("bob", {"n": 1}) is False
    # B comes back: it was reaped, so it fences itself instead of writing its members back.
    proxy.blackhole(False)
    await wait_for(b.ready, what="node B ready again")
    assert [f["c"] for f in fenced] == ["reaped"] and sorted(fenced[0]["peers"].split()) == ["bea", "bob"]
    assert await a.members("room") == [Member("alice", "Alice", "room", "node-a")]
    assert await a.rooms() == {"room": 1}
    assert await a.send("bob", {"n": 2}) is False
    # It goes on as a node with no sessions: new members join and are reached as usual.
    assert await b.add_member(Member("bob2", "Bob", "room", "node-b")) == [Member("alice", "Alice", "room", "node-a")]
    assert await a.send("bob2", {"n": 3})
    await inbox_b.until(lambda: [m for _, m in inbox_b.got] == [{"n": 3}])
    assert len(fenced) == 1


async def test_closing_leaves_nothing_behind(redis_server: RedisServer, prefix: str, redis_backends: Make) -> None:
    import redis.asyncio as aioredis

    a, _, b, _ = await two_nodes(redis_backends, redis_server.url, prefix)
    for n in range(10):
        await a.send("bob", {"n": n})
    await a.remove_member("room", "alice")
    await b.remove_member("room", "bob")
    await a.close()
    await b.close()
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        keys = sorted([k async for k in client.scan_iter(match=f"{prefix}*")])
    finally:
        await client.aclose()
    # Two cluster-wide scalars (the join counter, the resync marker); no room, index, inbox, alive key.
    assert keys == [f"{prefix}joinseq", f"{prefix}resync-until"]


async def test_inbox_is_bounded(redis_server: RedisServer, prefix: str, redis_backends: Make) -> None:
    import redis.asyncio as aioredis

    a, b = redis_backends(redis_server.url, prefix, inbox_maxlen=100), redis_backends(redis_server.url, prefix)
    await a.start("node-a", Inbox())
    # node-b holds a member but never reads (not started): its inbox must stay bounded anyway.
    await b.add_member(Member("bob", "Bob", "room", "node-b"))
    for n in range(2000):
        await a.send("bob", {"n": n})
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        length = await client.xlen(a.inbox_key("node-b"))
        ttl = await client.pttl(a.inbox_key("node-b"))
    finally:
        await client.aclose()
    assert 100 <= length < 400  # MAXLEN ~ trims whole macro-nodes
    assert 0 < ttl <= a.inbox_ttl * 1000


async def _not(ready: Any) -> bool:
    return not await ready



async def _members_are(backend: RedisBackend, peers: list[str]) -> bool:
    return [m.peer_id for m in await backend.members("room")] == peers
