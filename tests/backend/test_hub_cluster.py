"""The unchanged hub on two signaling nodes sharing one Redis: a room spans both nodes.

Uses ``build_app(config, backend=...)`` as ``switchboard serve --redis URL`` will; the clients are
raw WebSockets on loopback.
"""

from __future__ import annotations

from dataclasses import replace

from signaling.config import ServerConfig
from tests.backend.conftest import RedisServer, fast_backend, wait_for
from tests.conftest import RunningServer, ServerFactory, make_config
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
