"""The Backend contract: MemoryBackend and RedisBackend behave identically.

Every test here runs against both implementations (the ``backend`` fixture), and a property test
drives both with the same random operations and compares every answer.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.backend import Backend, Member, MemoryBackend
from tests.backend.conftest import Inbox, RedisServer, fast_backend


def m(peer: str, room: str = "r", node: str = "n1", name: str = "") -> Member:
    return Member(peer, name or peer.upper(), room, node)


async def test_ready_follows_the_lifecycle_and_close_is_idempotent(backend: Backend) -> None:
    assert not await backend.ready()
    await backend.start("n1", Inbox())
    assert await backend.ready()
    await backend.close()
    assert not await backend.ready()
    await backend.close()
    assert not await backend.ready()


async def test_add_member_returns_the_members_before_it_in_join_order(backend: Backend) -> None:
    await backend.start("n1", Inbox())
    assert await backend.add_member(m("a")) == []
    assert await backend.add_member(m("b")) == [m("a")]
    assert await backend.add_member(m("c")) == [m("a"), m("b")]
    assert await backend.add_member(m("x", room="other")) == []
    assert await backend.members("r") == [m("a"), m("b"), m("c")]
    assert await backend.members("other") == [m("x", room="other")]


async def test_max_members_refuses_and_adds_nothing(backend: Backend) -> None:
    await backend.start("n1", Inbox())
    assert await backend.add_member(m("a"), max_members=2) == []
    assert await backend.add_member(m("b"), max_members=2) == [m("a")]
    assert await backend.add_member(m("c"), max_members=2) is None
    assert await backend.member("c") is None
    assert await backend.members("r") == [m("a"), m("b")]
    # A limit of zero refuses even the first member and leaves no empty room behind.
    assert await backend.add_member(m("z", room="empty"), max_members=0) is None
    assert await backend.rooms() == {"r": 2}
    # Space freed by a removal can be taken again.
    assert await backend.remove_member("r", "a") == [m("b")]
    assert await backend.add_member(m("c"), max_members=2) == [m("b")]


async def test_remove_member_returns_the_rest_or_none(backend: Backend) -> None:
    await backend.start("n1", Inbox())
    await backend.add_member(m("a"))
    await backend.add_member(m("b"))
    assert await backend.remove_member("r", "nobody") is None
    assert await backend.remove_member("elsewhere", "a") is None  # right peer, wrong room
    assert await backend.remove_member("r", "a") == [m("b")]
    assert await backend.remove_member("r", "a") is None  # once only
    assert await backend.member("a") is None
    assert await backend.remove_member("r", "b") == []
    assert await backend.members("r") == []
    assert await backend.rooms() == {}


async def test_member_and_rooms_see_every_node(backend: Backend) -> None:
    await backend.start("n1", Inbox())
    await backend.add_member(m("a", node="n1"))
    await backend.add_member(m("b", node="n2"))
    await backend.add_member(m("c", room="s", node="n2"))
    assert await backend.member("a") == m("a", node="n1")
    assert await backend.member("b") == m("b", node="n2")
    assert await backend.member("nobody") is None
    assert await backend.rooms() == {"r": 2, "s": 1}
    assert await backend.members("nowhere") == []


async def test_send_to_an_unknown_peer_is_false(backend: Backend) -> None:
    inbox = Inbox()
    await backend.start("n1", inbox)
    assert await backend.send("nobody", {"type": "x"}) is False
    await backend.add_member(m("a"))
    await backend.remove_member("r", "a")
    assert await backend.send("a", {"type": "x"}) is False
    assert inbox.got == []


async def test_send_before_start_is_false(backend: Backend) -> None:
    await backend.add_member(m("a"))
    assert await backend.send("a", {"type": "x"}) is False
    await backend.close()


async def test_deliver_receives_messages_in_order(backend: Backend) -> None:
    inbox = Inbox()
    await backend.start("n1", inbox)
    await backend.add_member(m("a"))
    await backend.add_member(m("b"))
    for i in range(200):
        assert await backend.send("a" if i % 3 else "b", {"type": "signal", "n": i, "data": {"nested": [i, "é"]}})
    await inbox.until(lambda: len(inbox.got) == 200)
    assert [msg["n"] for msg in inbox.of("a")] == [i for i in range(200) if i % 3]
    assert [msg["n"] for msg in inbox.of("b")] == [i for i in range(200) if not i % 3]
    assert inbox.of("a")[0] == {"type": "signal", "n": 1, "data": {"nested": [1, "é"]}}


async def test_send_with_a_room_reaches_only_a_member_of_that_room(backend: Backend) -> None:
    inbox = Inbox()
    await backend.start("n1", inbox)
    await backend.add_member(m("a"))  # in the room m() uses
    room = (await backend.member("a")).room  # type: ignore[union-attr]
    assert await backend.send("a", {"type": "x", "n": 1}, room="elsewhere") is False
    assert await backend.send("a", {"type": "x", "n": 2}, room=room) is True
    await inbox.until(lambda: len(inbox.got) == 1)
    assert [msg["n"] for msg in inbox.of("a")] == [2]


# -- differential property test -------------------------------------------------------------------

PEERS = ["p1", "p2", "p3", "p4", "p5"]
ROOMS = ["r1", "r2"]
op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(PEERS), st.sampled_from(ROOMS), st.sampled_from(["n1", "n2"]), st.none() | st.integers(0, 3)),
    st.tuples(st.just("remove"), st.sampled_from(PEERS), st.sampled_from(ROOMS)),
    st.tuples(st.just("members"), st.sampled_from(ROOMS)),
    st.tuples(st.just("member"), st.sampled_from(PEERS)),
    st.tuples(st.just("rooms")),
    st.tuples(st.just("send"), st.sampled_from(PEERS)),
)


async def apply(backend: Backend, operation: tuple[Any, ...]) -> object:
    kind, *args = operation
    if kind == "add":
        peer, room, node, limit = args
        return await backend.add_member(Member(peer, peer, room, node), max_members=limit)
    if kind == "remove":
        return await backend.remove_member(*args)
    if kind == "members":
        return await backend.members(*args)
    if kind == "member":
        return await backend.member(*args)
    if kind == "rooms":
        return await backend.rooms()
    return await backend.send(args[0], {"type": "x"})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, max_size=25))
async def test_memory_and_redis_agree_on_any_sequence(redis_server: RedisServer, ops: list[tuple[Any, ...]]) -> None:
    memory = MemoryBackend()
    redis = fast_backend(redis_server.url, f"h{uuid.uuid4().hex[:12]}:")
    try:
        await memory.start("n1", Inbox())
        await redis.start("n1", Inbox())
        added: set[str] = set()
        for operation in ops:
            # The hub never adds a peer id twice; neither does this test.
            if operation[0] == "add":
                if operation[1] in added:
                    continue
                added.add(operation[1])
            expected = await apply(memory, operation)
            assert await apply(redis, operation) == expected, operation
    finally:
        await redis.close()
        await memory.close()


@pytest.mark.parametrize("limit", [1, 3])
async def test_max_members_is_atomic_across_nodes(redis_server: RedisServer, prefix: str, limit: int, redis_backends: Any) -> None:
    """Two nodes admitting 40 joins to one room at once never exceed the limit."""
    import asyncio

    a, b = redis_backends(redis_server.url, prefix), redis_backends(redis_server.url, prefix)
    await a.start("na", Inbox())
    await b.start("nb", Inbox())
    results = await asyncio.gather(
        *(
            (a if i % 2 else b).add_member(m(f"p{i}", node="na" if i % 2 else "nb"), max_members=limit)
            for i in range(40)
        )
    )
    admitted = [r for r in results if r is not None]
    assert len(admitted) == limit
    assert sorted(len(r) for r in admitted) == list(range(limit))
    assert len(await a.members("r")) == limit
    assert await b.rooms() == {"r": limit}
