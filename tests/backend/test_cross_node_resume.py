"""Sessions survive their node: a client resumes on another node of the cluster.

Two in-process signaling nodes share one real Redis. The process-level version (``kill -9`` of a
node process) is in tests/cluster/test_signaling_failover.py; here the nodes stay alive, so these
tests also cover the takeover of a session its old node still holds (fencing, 4012 there).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from signaling.client import Client, SignalReceived
from signaling.core.backoff import Backoff
from signaling.core.config import ServerConfig
from tests.backend.conftest import RedisServer, fast_backend, wait_for
from tests.conftest import PATIENCE, UNIT, ServerFactory, make_config
from tests.raw import Raw


def node_config(node_id: str) -> ServerConfig:
    return replace(make_config(), node_id=node_id)


async def _collect(client: Client, count: int) -> list[int]:
    got: list[int] = []
    async with asyncio.timeout(PATIENCE * 2):
        async for event in client:
            if isinstance(event, SignalReceived):
                got.append(event.data["n"])
                if len(got) == count:
                    break
    return got


async def test_a_session_moves_to_another_node_mid_stream_and_nothing_is_lost_or_repeated(
    redis_server: RedisServer, prefix: str, start_server: ServerFactory
) -> None:
    one = await start_server(node_config("sig-1"), backend=fast_backend(redis_server.url, prefix))
    two = await start_server(node_config("sig-2"), backend=fast_backend(redis_server.url, prefix))
    alice = Client(one.url, "room", name="alice", backoff=Backoff(base=UNIT, cap=10 * UNIT))
    # bob has both nodes, as a client behind a load balancer that sends it elsewhere on reconnect.
    bob = Client([two.url, one.url], "room", name="bob", backoff=Backoff(base=UNIT, cap=10 * UNIT))
    await alice.connect()
    await bob.connect()
    assert bob.peer_id is not None and alice.peer_id is not None
    session = bob.session_id
    try:
        inbound = asyncio.create_task(_collect(bob, 300))
        outbound = asyncio.create_task(_collect(alice, 100))
        for n in range(1, 301):
            await alice.signal(bob.peer_id, {"n": n})
            if n <= 100:
                await bob.signal(alice.peer_id, {"n": n})
            if n == 120:
                # sig-2 lets bob go (1001): the SDK moves to sig-1 and resumes there.
                assert two.hub.disconnect(session)
        assert await inbound == list(range(1, 301))
        assert await outbound == list(range(1, 101))
        assert bob.session_id == session and bob.rejoins == 0 and bob.resumes >= 1
        assert bob.url == one.url
        # The session and the membership moved; sig-2 holds nothing of bob any more.
        member = await one.hub.backend.member(bob.peer_id)
        assert member is not None and member.node_id == "sig-1"
        await wait_for(lambda: two.hub.session_count == 0, what="sig-2 to let the session go")
        assert one.hub.session_count == 2
    finally:
        await alice.close()
        await bob.close()


async def test_the_old_node_closes_its_socket_4012_when_the_session_resumes_elsewhere(
    redis_server: RedisServer, prefix: str, start_server: ServerFactory
) -> None:
    one = await start_server(node_config("sig-1"), backend=fast_backend(redis_server.url, prefix))
    two = await start_server(node_config("sig-2"), backend=fast_backend(redis_server.url, prefix))
    alice = await Raw.joined(one.url, "room", "alice")
    bob = await Raw.joined(two.url, "room", "bob")
    try:
        await alice.expect("peer-joined")
        await alice.send({"type": "signal", "to": bob.peer, "data": {"n": 1}, "cseq": 1})
        first = await bob.expect("signal")
        assert first["data"] == {"n": 1}
        # A second socket resumes bob's session on sig-1 while sig-2 still holds the first.
        again = await Raw.connect(one.url)
        await again.send({"type": "join", "room": "room", "resume": {
            "session": bob.welcome["session"], "token": bob.welcome["resume_token"], "last_seq": first["seq"]}})
        welcome = await again.expect("welcome")
        assert welcome["resumed"] is True and welcome["node"] == "sig-1"
        assert welcome["peer"] == bob.peer
        assert await _close_frame(bob) == 4012
        # alice keeps talking to bob, now through sig-1, with his seq continuing.
        await alice.send({"type": "signal", "to": bob.peer, "data": {"n": 2}, "cseq": 2})
        second = await again.expect("signal")
        assert second["data"] == {"n": 2} and second["seq"] == first["seq"] + 1
        await again.close()
    finally:
        await alice.close()
        await bob.close()


async def test_a_resume_elsewhere_with_a_wrong_token_is_refused_and_changes_nothing(
    redis_server: RedisServer, prefix: str, start_server: ServerFactory
) -> None:
    one = await start_server(node_config("sig-1"), backend=fast_backend(redis_server.url, prefix))
    two = await start_server(node_config("sig-2"), backend=fast_backend(redis_server.url, prefix))
    bob = await Raw.joined(two.url, "room", "bob")
    try:
        for resume in (
            {"session": bob.welcome["session"], "token": "x" * 43, "last_seq": 1},
            {"session": "s_unknown", "token": bob.welcome["resume_token"], "last_seq": 1},
            {"session": bob.welcome["session"], "token": bob.welcome["resume_token"], "last_seq": 99},
        ):
            thief = await Raw.connect(one.url)
            await thief.send({"type": "join", "room": "room", "resume": resume})
            assert (await thief.expect("error"))["code"] == "resume-failed"
            assert await thief.closed() == 4011
            await thief.close()
        # bob still owns his session on sig-2 and hears from the room.
        alice = await Raw.joined(one.url, "room", "alice")
        assert (await bob.expect("peer-joined"))["peer"]["id"] == alice.peer
        await alice.close()
    finally:
        await bob.close()


async def test_a_session_resumes_from_redis_after_its_node_stopped_without_ending_it(
    redis_server: RedisServer, prefix: str, start_server: ServerFactory
) -> None:
    """The node's process stops without ending its sessions (as after a crash, minus the dead
    socket): alice's messages sent to bob meanwhile wait in sig-2's inbox and reach bob when he
    resumes on sig-1, after what he had not acknowledged."""
    one = await start_server(node_config("sig-1"), backend=fast_backend(redis_server.url, prefix))
    two = await start_server(node_config("sig-2"), backend=fast_backend(redis_server.url, prefix))
    alice = await Raw.joined(one.url, "room", "alice")
    bob = await Raw.joined(two.url, "room", "bob")
    try:
        await alice.expect("peer-joined")
        for n in (1, 2):
            await alice.send({"type": "signal", "to": bob.peer, "data": {"n": n}, "cseq": n})
        first = await bob.expect("signal")
        await bob.expect("signal")
        # sig-2 stops reading and writing Redis, as a dead process would; its alive key lapses.
        await two.hub.tasks.close()  # its reaper would reopen Redis connections
        await two.hub.backend.close()
        for n in (3, 4):
            await alice.send({"type": "signal", "to": bob.peer, "data": {"n": n}, "cseq": n})
        resumed = await Raw.connect(one.url)
        await resumed.send({"type": "join", "room": "room", "resume": {
            "session": bob.welcome["session"], "token": bob.welcome["resume_token"], "last_seq": first["seq"]}})
        welcome = await resumed.expect("welcome")
        # 2 is replayed; 3 and 4 (pending in sig-2's inbox) are stamped here and count as
        # replayed too when their ledger write lands before the welcome (a race, not a defect).
        assert welcome["resumed"] is True and 1 <= welcome["replayed"] <= 3
        got = [await resumed.expect("signal") for _ in range(3)]
        assert [m["data"]["n"] for m in got] == [2, 3, 4]
        assert [m["seq"] for m in got] == [first["seq"] + 1, first["seq"] + 2, first["seq"] + 3]
        assert (await alice.expect("peer-resumed"))["peer"] == bob.peer
        await resumed.close()
    finally:
        await alice.close()
        await bob.close()


async def test_redis_holds_nothing_of_a_session_that_ended(
    redis_server: RedisServer, prefix: str, start_server: ServerFactory
) -> None:
    import redis.asyncio as aioredis

    one = await start_server(node_config("sig-1"), backend=fast_backend(redis_server.url, prefix))
    alice = await Raw.joined(one.url, "room", "alice")
    bob = await Raw.joined(one.url, "room", "bob")
    await alice.send({"type": "signal", "to": bob.peer, "data": {}, "cseq": 1})
    await bob.expect("signal")
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        assert await client.exists(f"{prefix}sess:{bob.welcome['session']}") == 1
        for raw in (alice, bob):
            await raw.send({"type": "leave"})
            await raw.close()
        await wait_for(lambda: _no_session_keys(client, prefix), what="session keys to go")
    finally:
        await client.aclose()


async def _no_session_keys(client: object, prefix: str) -> bool:
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]  # type: ignore[attr-defined]
    return not [k for k in keys if k.startswith((f"{prefix}sess:", f"{prefix}mbox:"))]


async def _close_frame(raw: Raw) -> int | None:
    """The code of the close frame the server sent (what a browser's close event reports)."""
    import aiohttp

    async with asyncio.timeout(PATIENCE):
        while True:
            msg = await raw.ws.receive()
            if msg.type is aiohttp.WSMsgType.CLOSE:
                return int(msg.data)
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return None


async def test_data_fans_out_across_nodes_once_and_in_order_while_a_session_moves(
    redis_server: RedisServer, prefix: str, start_server: ServerFactory
) -> None:
    """``data`` (the page's chat) to the whole room reaches peers on both nodes through Redis,
    and a recipient whose session moves to the other node mid-stream misses nothing and gets
    nothing twice."""
    from signaling.client import DataReceived
    from tests.conftest import UNLIMITED

    # 100 messages as fast as the client can: beyond the data rate they would be refused.
    unlimited = replace(UNLIMITED, data_rate=1e9, data_burst=1e9)
    one = await start_server(replace(node_config("sig-1"), security=unlimited), backend=fast_backend(redis_server.url, prefix))
    two = await start_server(replace(node_config("sig-2"), security=unlimited), backend=fast_backend(redis_server.url, prefix))
    alice = Client(one.url, "room", name="alice", backoff=Backoff(base=UNIT, cap=10 * UNIT))
    bob = Client([two.url, one.url], "room", name="bob", backoff=Backoff(base=UNIT, cap=10 * UNIT))
    carol = Client(one.url, "room", name="carol", backoff=Backoff(base=UNIT, cap=10 * UNIT))
    for client in (alice, bob, carol):
        await client.connect()

    async def chat(client: Client, count: int) -> list[int]:
        got: list[int] = []
        async with asyncio.timeout(PATIENCE * 2):
            async for event in client:
                if isinstance(event, DataReceived):
                    assert event.sender == alice.peer_id and event.topic == "chat"
                    got.append(event.payload["n"])
                    if len(got) == count:
                        break
        return got

    try:
        at_bob = asyncio.create_task(chat(bob, 100))
        at_carol = asyncio.create_task(chat(carol, 100))
        for n in range(1, 101):
            await alice.send_data("chat", {"n": n})
            if n == 40:
                assert two.hub.disconnect(bob.session_id or "")  # bob moves to sig-1
        assert await at_bob == list(range(1, 101))
        assert await at_carol == list(range(1, 101))
        assert bob.resumes >= 1 and bob.rejoins == 0
    finally:
        for client in (alice, bob, carol):
            await client.close()
