"""The node registry and room placement on a real Redis, with short scaled TTLs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from signaling.cluster.redis_backend import BackendUnavailable
from signaling.cluster.registry import NodeInfo, NodeKind, NodeRegistry
from tests.backend.conftest import UNIT, RedisServer, wait_for

Make = Callable[..., NodeRegistry]


def sfu(node_id: str, capacity: int = 10, load: float = 0) -> NodeInfo:
    return NodeInfo(node_id, "sfu", f"http://{node_id}:8081", capacity, load)


async def ids(registry: NodeRegistry, kind: NodeKind | None = None) -> list[str]:
    return [n.id for n in await registry.nodes(kind)]


async def test_heartbeat_keeps_a_node_alive_past_its_ttl(redis_server: RedisServer, prefix: str, registries: Make) -> None:
    node = registries(redis_server.url, prefix)
    observer = registries(redis_server.url, prefix)
    await node.register(sfu("s1"))
    loop = asyncio.get_running_loop()
    until = loop.time() + 3 * node.ttl
    # timeline: watch for three TTLs; the node must be listed at every look.
    while loop.time() < until:
        assert await ids(observer) == ["s1"]
        await asyncio.sleep(node.heartbeat_interval / 2)
    assert await node.ready()


async def test_a_node_that_stops_beating_is_gone_after_the_ttl(redis_server: RedisServer, prefix: str, registries: Make) -> None:
    node = registries(redis_server.url, prefix)
    observer = registries(redis_server.url, prefix)
    await node.register(sfu("s1"))
    assert await ids(observer) == ["s1"]
    loop = asyncio.get_running_loop()
    stopped = loop.time()
    await node.close(deregister=False)  # a crash: the key is left to expire
    await wait_for(lambda: _empty(observer), timeout=node.ttl + 100 * UNIT, what="the dead node to expire")
    assert loop.time() - stopped >= node.ttl - node.heartbeat_interval - UNIT  # not before its TTL


async def test_close_deregisters_at_once_and_lists_kinds(redis_server: RedisServer, prefix: str, registries: Make) -> None:
    s1, sig = registries(redis_server.url, prefix), registries(redis_server.url, prefix)
    await s1.register(sfu("s1"))
    await sig.register(NodeInfo("sig-1", "signaling", "http://sig-1:8080", 1000))
    assert await ids(sig) == ["s1", "sig-1"]
    assert await ids(sig, "sfu") == ["s1"]
    assert await ids(sig, "signaling") == ["sig-1"]
    await s1.close()
    assert await ids(sig) == ["sig-1"]
    await s1.close()  # idempotent


async def test_updates_and_draining_are_published(redis_server: RedisServer, prefix: str, registries: Make) -> None:
    node, observer = registries(redis_server.url, prefix), registries(redis_server.url, prefix)
    await node.register(sfu("s1"))
    node.update(load=4, capacity=20)
    await wait_for(lambda: _load_is(observer, 4.0), what="the next heartbeat to carry the load")
    await node.set_draining()
    (info,) = await observer.nodes()
    assert info == NodeInfo("s1", "sfu", "http://s1:8081", 20, 4.0, True)


async def test_placement_picks_the_least_loaded_and_is_sticky(redis_server: RedisServer, prefix: str, registries: Make) -> None:
    a, b, c, sig = (registries(redis_server.url, prefix) for _ in range(4))
    await a.register(sfu("a", capacity=10, load=5))
    await b.register(sfu("b", capacity=10))
    await c.register(sfu("c", capacity=10))
    assert await sig.place("r1") == "b"  # b and c are empty: the smaller id wins
    assert await sig.place("r2") == "c"
    assert await sig.place("r3") == "b"
    assert await sig.place("r1") == "b"  # sticky
    # Stickiness survives a change in load: the room stays where its media is.
    c.update(load=0)
    assert await sig.place("r2") == "c"
    assert await sig.rooms_on("b") == {"r1", "r3"}
    assert await sig.placement("r3") == "b"
    assert await sig.release("r3") == "b"
    assert await sig.release("r3") is None
    assert await sig.rooms_on("b") == {"r1"}
    assert await sig.placement("r3") is None


async def test_placement_skips_full_draining_and_dead_nodes(redis_server: RedisServer, prefix: str, registries: Make) -> None:
    full, draining, dead, sig = (registries(redis_server.url, prefix) for _ in range(4))
    await full.register(sfu("full", capacity=1))
    await draining.register(sfu("draining"))
    await draining.set_draining()
    await dead.register(sfu("dead"))
    await dead.close(deregister=True)
    assert await sig.place("r1") == "full"
    assert await sig.place("r2") is None  # full is full, draining takes nothing, dead is gone
    # A draining node keeps what it has.
    await draining.set_draining(False)
    assert await sig.place("r2") == "draining"
    await draining.set_draining(True)
    assert await sig.place("r2") == "draining"


async def test_a_draining_node_hands_its_rooms_over_when_another_can_take_them(
    redis_server: RedisServer, prefix: str, registries: Make
) -> None:
    old, new, sig, other = (registries(redis_server.url, prefix) for _ in range(4))
    await old.register(sfu("old"))
    assert [await sig.place(r) for r in ("r1", "r2")] == ["old", "old"]
    # Nowhere to go: the rooms stay on the draining node (they move once it is gone).
    await old.set_draining()
    assert await sig.place("r1", away_from="old") == "old"
    await new.register(sfu("new", capacity=1))
    # Without away_from placement stays sticky; with it the room moves, once, while old lives.
    assert await sig.place("r1") == "old"
    assert await sig.place("r1", away_from="old") == "new"
    assert await other.place("r1", away_from="old") == "new"  # a second signaling node agrees
    assert await sig.rooms_on("old") == {"r2"}
    assert await sig.rooms_on("new") == {"r1"}
    # new is full now: r2 stays where it is, its placement untouched.
    assert await sig.place("r2", away_from="old") == "old"
    assert await sig.placement("r2") == "old"
    # A node that is not draining is never picked by its own away_from.
    assert await sig.place("r3", away_from="new") is None


async def test_placement_is_atomic_under_concurrent_clients(redis_server: RedisServer, prefix: str, registries: Make) -> None:
    """Two signaling nodes place 60 rooms at once over 3 SFUs with 7 slots each."""
    sfus = [registries(redis_server.url, prefix) for _ in range(3)]
    for i, reg in enumerate(sfus):
        await reg.register(sfu(f"s{i}", capacity=7))
    one, two = registries(redis_server.url, prefix), registries(redis_server.url, prefix)
    rooms = [f"room-{i}" for i in range(60)]
    # Every room is placed from both clients at once too: both must agree on its node.
    first = await asyncio.gather(*(one.place(r) for r in rooms), *(two.place(r) for r in reversed(rooms)))
    by_one = dict(zip(rooms, first[:60], strict=True))
    by_two = dict(zip(reversed(rooms), first[60:], strict=True))
    assert by_one == by_two
    placed = {r: n for r, n in by_one.items() if n is not None}
    assert len(placed) == 21  # exactly the capacity, never more
    for i in range(3):
        on = await one.rooms_on(f"s{i}")
        assert len(on) == 7
        assert on == {r for r, n in placed.items() if n == f"s{i}"}


async def test_rooms_of_a_dead_sfu_are_listed_and_placed_again(redis_server: RedisServer, prefix: str, registries: Make) -> None:
    a, b, sig = (registries(redis_server.url, prefix) for _ in range(3))
    await a.register(sfu("a", capacity=2))
    assert [await sig.place(r) for r in ("r1", "r2")] == ["a", "a"]
    await b.register(sfu("b", capacity=2, load=1))
    assert await sig.place("r3") == "b"
    assert await sig.orphaned() == {}
    await a.close(deregister=False)  # crash
    await wait_for(lambda: _orphaned(sig, {"r1": "a", "r2": "a"}), timeout=a.ttl + 100 * UNIT, what="a's rooms to be orphaned")
    # b reports load 1 of 2 and holds r3: it takes one more room only.
    assert [await sig.place(r) for r in sorted(await sig.orphaned())] == ["b", None]
    assert await sig.orphaned() == {"r2": "a"}
    c = registries(redis_server.url, prefix)
    await c.register(sfu("c", capacity=5))
    assert [await sig.place(r) for r in sorted(await sig.orphaned())] == ["c"]
    assert await sig.orphaned() == {}
    assert await sig.rooms_on("a") == set()
    assert await sig.rooms_on("b") == {"r1", "r3"}
    assert await sig.rooms_on("c") == {"r2"}


async def test_an_unreachable_redis_is_reported(registries: Make) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reg = registries(f"redis://127.0.0.1:{port}/0", "x:")  # nothing listens there
    assert not await reg.ready()
    with pytest.raises(BackendUnavailable):
        await reg.register(sfu("s1"))
    with pytest.raises(BackendUnavailable):
        await reg.place("r")


async def _empty(registry: NodeRegistry) -> bool:
    return await registry.nodes() == []


async def _load_is(registry: NodeRegistry, load: float) -> bool:
    return [n.load for n in await registry.nodes()] == [load]


async def _orphaned(registry: NodeRegistry, expected: dict[str, str]) -> bool:
    return await registry.orphaned() == expected
