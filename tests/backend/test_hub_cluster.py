"""The unchanged hub on two signaling nodes sharing one Redis: a room spans both nodes.

Uses ``build_app(config, backend=...)`` as ``switchboard serve --redis URL`` will; the clients are
raw WebSockets on loopback.
"""

from __future__ import annotations

from dataclasses import replace

from signaling.client import Client, Resumed, SignalReceived
from signaling.core.config import ServerConfig
from signaling.core.sfu_rpc import VIA
from tests.backend.conftest import PATIENCE, UNIT, RedisServer, fast_backend, wait_for
from tests.conftest import RunningServer, ServerFactory, make_config
from tests.media.peers import HeldBackoff
from tests.raw import Raw


def node_config(node_id: str) -> ServerConfig:
    return replace(make_config(), node_id=node_id)


async def test_peers_on_two_nodes_meet_and_signal_in_order(redis_server: RedisServer, prefix: str, start_server: ServerFactory) -> None:
    one = await start_server(node_config("sig-1"), backend=fast_backend(redis_server.url, prefix))
    two = await start_server(node_config("sig-2"), backend=fast_backend(redis_server.url, prefix))
    alice = await Raw.joined(one.url, "call", "alice")
    bob = await Raw.joined(two.url, "call", "bob")
    try:
        assert alice.welcome["node"] == "sig-1" and bob.welcome["node"] == "sig-2"
        assert bob.welcome["peers"] == [{"id": alice.peer, "name": "alice"}]
        joined = await alice.expect("peer-joined")  # crossed from sig-2 to sig-1 through Redis
        assert joined["peer"] == {"id": bob.peer, "name": "bob"}
        for n in range(1, 51):
            await alice.send({"type": "signal", "to": bob.peer, "data": {"n": n}, "cseq": n})
        got = [await bob.expect("signal") for _ in range(50)]
        assert [m["data"]["n"] for m in got] == list(range(1, 51))
        assert {m["from"] for m in got} == {alice.peer}
        await bob.send({"type": "signal", "to": alice.peer, "data": {"answer": True}, "cseq": 1})
        assert (await alice.expect("signal"))["data"] == {"answer": True}
        # bob leaves from sig-2; alice, on sig-1, hears it.
        await bob.send({"type": "leave"})
        left = await alice.expect("peer-left")
        assert left["peer"] == bob.peer
        assert await one.hub.backend.members("call") == await two.hub.backend.members("call")
        await wait_for(lambda: _rooms_are(two, {"call": 1}), what="the room to shrink")
    finally:
        for raw in (alice, bob):
            await raw.close()


async def test_readyz_reports_the_redis_backend(redis_server: RedisServer, prefix: str, start_server: ServerFactory) -> None:
    import aiohttp

    server = await start_server(node_config("sig-1"), backend=fast_backend(redis_server.url, prefix))
    async with aiohttp.ClientSession() as http, http.get(f"{server.http_url}/readyz") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["backend"] is True


async def _rooms_are(server: RunningServer, expected: dict[str, int]) -> bool:
    return await server.hub.backend.rooms() == expected


async def test_redis_restart_mid_session_loses_no_client_message(
    redis_factory, prefix: str, start_server: ServerFactory  # type: ignore[no-untyped-def]
) -> None:
    """Redis dies under two nodes. A signal sent meanwhile is not confirmed (the node closes 1011
    instead of dropping it); the SDK resends it after resuming once Redis is back: delivered once.
    Without persistence Redis restarts empty: the nodes write their members back (resync)."""
    import asyncio

    from signaling.client import Client, SignalReceived
    from signaling.core.backoff import Backoff
    from tests.conftest import PATIENCE, UNIT

    redis = redis_factory()
    one = await start_server(node_config("sig-1"), backend=fast_backend(redis.url, prefix))
    two = await start_server(node_config("sig-2"), backend=fast_backend(redis.url, prefix))
    backoff = Backoff(base=UNIT, cap=10 * UNIT)
    alice = Client(one.url, "room", name="alice", backoff=backoff)
    bob = Client(two.url, "room", name="bob", backoff=Backoff(base=UNIT, cap=10 * UNIT))
    await alice.connect()
    await bob.connect()
    assert bob.peer_id is not None
    try:
        await alice.signal(bob.peer_id, {"n": 1})
        redis.kill()
        await alice.signal(bob.peer_id, {"n": 2})  # in flight while Redis is down
        await wait_for(lambda: _not_ready(one), what="sig-1 to notice the outage")
        redis.start()
        await alice.signal(bob.peer_id, {"n": 3})
        got: list[int] = []
        async with asyncio.timeout(PATIENCE * 2):
            async for event in bob:
                if isinstance(event, SignalReceived):
                    got.append(event.data["n"])
                    if got[-1] == 3:
                        break
        assert got == [1, 2, 3]
        assert alice.rejoins == 0 and bob.rejoins == 0
    finally:
        await alice.close()
        await bob.close()


async def _not_ready(server: RunningServer) -> bool:
    return not await server.hub.backend.ready()


async def test_nodes_register_drain_and_leave_the_registry(
    redis_server: RedisServer, prefix: str, start_server: ServerFactory
) -> None:
    import aiohttp

    def config(node: str) -> ServerConfig:
        return replace(make_config(), node_id=node, admin_token="t", redis_url=redis_server.url, redis_prefix=prefix)

    async def listed(server: RunningServer) -> dict[str, bool]:
        async with aiohttp.ClientSession() as http, http.get(
            f"{server.http_url}/admin/nodes", headers={"Authorization": "Bearer t"}
        ) as resp:
            assert resp.status == 200
            return {n["node"]: n["draining"] for n in (await resp.json())["nodes"]}

    one = await start_server(config("sig-1"))
    two = await start_server(config("sig-2"))
    assert await listed(one) == {"sig-1": False, "sig-2": False}
    await two.hub.drain(1.0)
    assert await listed(one) == {"sig-1": False, "sig-2": True}
    await two.stop()  # a clean stop deregisters at once (a crash would expire after the TTL)
    assert await listed(one) == {"sig-1": False}


async def test_a_drained_node_waits_until_its_sessions_resumed_elsewhere(
    redis_server: RedisServer, prefix: str, start_server: ServerFactory
) -> None:
    """A drain in a cluster returns only once its sessions live on another node: a node that exited
    as soon as its sockets closed would end the sessions whose clients had not resumed yet (they
    would rejoin). Here the client waits 20 units before it reconnects."""
    one = await start_server(node_config("sig-1"), backend=fast_backend(redis_server.url, prefix))
    two = await start_server(node_config("sig-2"), backend=fast_backend(redis_server.url, prefix))
    alice = Client([one.url, two.url], "room", name="alice", backoff=HeldBackoff(20 * UNIT))
    bob = Client(two.url, "room", name="bob")
    await alice.connect()
    await bob.connect()
    try:
        session = alice.session_id
        assert alice.peer_id is not None and bob.peer_id is not None
        await one.hub.drain(PATIENCE)
        assert one.hub.session_count == 0  # moved, not ended
        resumed = await alice.next_event()
        while not isinstance(resumed, Resumed):
            resumed = await alice.next_event()
        assert (alice.session_id, alice.rejoins, alice.resumes) == (session, 0, 1)
        assert alice.url == two.url
        await alice.signal(bob.peer_id, {"after": "drain"})
        got = await bob.next_event()
        while not isinstance(got, SignalReceived):
            got = await bob.next_event()
        assert got.data == {"after": "drain"} and got.sender == alice.peer_id
    finally:
        await alice.close()
        await bob.close()


async def test_messages_of_an_sfu_node_the_room_moved_away_from_are_dropped(
    redis_server: RedisServer, prefix: str, start_server: ServerFactory
) -> None:
    """An SFU node that hands its rooms over still renegotiates for a moment; what it says after
    the room moved must not reach a client that started over with the new node. The field naming
    the SFU node never reaches any client."""
    one = await start_server(node_config("sig-1"), backend=fast_backend(redis_server.url, prefix))
    one.hub.media_current = lambda room, node: (room, node) == ("call", "sfu-new")
    alice = await Raw.joined(one.url, "call", "alice")
    try:
        await one.hub.deliver(alice.peer, {"type": "subscriber-offer", "sdp": "stale", VIA: "sfu-old"})
        await one.hub.deliver(alice.peer, {"type": "subscriber-offer", "sdp": "fresh", VIA: "sfu-new"})
        await one.hub.deliver(alice.peer, {"type": "track-published", "n": 1})  # not from an SFU node
        offer = await alice.expect("subscriber-offer")
        assert offer["sdp"] == "fresh" and VIA not in offer
        assert (await alice.expect("track-published"))["n"] == 1
    finally:
        await alice.close()
