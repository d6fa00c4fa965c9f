"""RemoteMedia and SfuNode in this process, over the real redis-server, with a fake SFU.

What the process tests cannot pin down cheaply: requests of a participant arrive in order through
the streams, a dead SFU node costs a call exactly its deadline (and a ``leave`` nothing), a room
moves when its node's registry entry expires, and its participants hear ``reconnect`` before
they are joined on the new node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from signaling.cluster.registry import NodeInfo, NodeRegistry
from signaling.cluster.remote_media import RemoteMedia
from signaling.cluster.sfu_node import SfuNode
from signaling.core.config import ClusterConfig, ServerConfig
from signaling.core.sfu_rpc import RemoteMediaError
from tests.backend.conftest import PATIENCE, UNIT, RedisServer, wait_for
from tests.cluster.fakes import FakeSfu

HEARTBEAT = 4 * UNIT
TTL = 12 * UNIT
RPC_TIMEOUT = 20 * UNIT


class World:
    """One key prefix: SFU nodes with fake SFUs, RemoteMedia ports, one shared event log."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        #: ("emit", participant, type) from the ports and (op, participant) from the fake SFUs.
        self.log: list[tuple[str, ...]] = []
        self.sfus: dict[str, FakeSfu] = {}
        self._nodes: list[SfuNode] = []
        self._ports: list[RemoteMedia] = []
        self._registries: list[NodeRegistry] = []

    async def sfu_node(self, node_id: str) -> SfuNode:
        config = ServerConfig(
            node_id=node_id, redis_url=self.url, redis_prefix=self.prefix,
            cluster=ClusterConfig(heartbeat_interval=HEARTBEAT, node_ttl=TTL),
        )

        def make(emit: Any) -> FakeSfu:
            fake = self.sfus[node_id] = FakeSfu(emit, self.log)  # type: ignore[arg-type]
            return fake

        node = SfuNode(config, media_factory=make)
        self._nodes.append(node)
        await node.start()
        return node

    async def port(self, node_id: str = "sig-1") -> RemoteMedia:
        def emit(participant: str, message: dict[str, Any]) -> None:
            self.log.append(("emit", participant, message["type"], message.get("scope", "")))

        port = RemoteMedia(
            self.url, node_id=node_id, emit=emit, key_prefix=self.prefix, rpc_timeout=RPC_TIMEOUT,
            failover_interval=2 * UNIT, heartbeat_interval=HEARTBEAT, node_ttl=TTL, op_timeout=20 * UNIT, block=2 * UNIT,
        )
        self._ports.append(port)
        await port.start()
        return port

    async def ghost(self, node_id: str) -> NodeRegistry:
        """A registered SFU node that reads no requests (a hung process), until it expires."""
        registry = NodeRegistry(self.url, key_prefix=self.prefix, heartbeat_interval=HEARTBEAT, ttl=TTL)
        self._registries.append(registry)
        await registry.register(NodeInfo(id=node_id, kind="sfu", address="http://127.0.0.1:9", capacity=10))
        return registry

    async def close(self) -> None:
        for port in self._ports:
            await port.close()
        for node in self._nodes:
            await node.close()
        for registry in self._registries:
            await registry.close()


@pytest.fixture
async def world(redis_server: RedisServer, prefix: str) -> AsyncIterator[World]:
    made = World(redis_server.url, prefix)
    yield made
    await made.close()


async def eventually(condition: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    await wait_for(condition, timeout=PATIENCE, what=what)


async def test_calls_run_on_the_sfu_node_in_order_and_answers_come_back(world: World) -> None:
    await world.sfu_node("sfu-a")
    port = await world.port()
    sfu = world.sfus["sfu-a"]
    await port.join("r", "a")
    await port.join("r", "b", subscribe=False)
    sfu.gates[("publish", "a")] = gate = asyncio.Event()
    publish = asyncio.create_task(port.publish("r", "a", "offer-a"))
    await eventually(lambda: port.stats()["rpc_pending"] == 1, "a's publish in flight")
    # b is not held up by a's slow publish.
    assert await port.publish("r", "b", "offer-b") == "answer to offer-b"
    candidate = asyncio.create_task(port.add_candidate("r", "a", "publisher", None))
    await eventually(lambda: port.stats()["rpc_pending"] == 2, "a's candidate in flight")
    gate.set()
    assert await publish == "answer to offer-a"
    await candidate
    assert [op for op, _, p in sfu.done if p == "a"] == ["join", "publish", "add_candidate"]
    with pytest.raises(RemoteMediaError) as refused:
        await port.unpublish("r", "a", "nope")
    assert refused.value.code == "unknown-track"
    with pytest.raises(RemoteMediaError) as refused:
        await port.publish("r", "stranger", "offer")
    assert refused.value.code == "not-joined"


async def test_a_hung_sfu_node_costs_a_call_its_deadline_and_a_leave_nothing(world: World) -> None:
    await world.ghost("sfu-hung")
    port = await world.port()
    started = time.monotonic()
    with pytest.raises(RemoteMediaError) as unavailable:
        await port.join("r", "a")
    assert unavailable.value.code == "sfu-unavailable"
    assert RPC_TIMEOUT <= time.monotonic() - started < PATIENCE
    started = time.monotonic()
    await port.leave("r", "a")  # appended, not awaited
    assert time.monotonic() - started < RPC_TIMEOUT
    stats = port.stats()
    assert (stats["rooms"], stats["participants"], stats["room_moves"]) == (0, 0, 0)
    assert stats["rpc_timeouts"] >= 1


async def test_a_join_that_got_no_answer_is_retried_and_the_client_told(world: World) -> None:
    await world.sfu_node("sfu-a")
    port = await world.port()
    world.sfus["sfu-a"].gates[("join", "a")] = gate = asyncio.Event()
    with pytest.raises(RemoteMediaError) as slow:
        await port.join("r", "a")
    assert slow.value.code == "sfu-unavailable"
    # The watcher joins it again (queued behind the slow one on the SFU node) and says so.
    await eventually(lambda: ("emit", "a", "reconnect", "media") in world.log, "reconnect {scope: media}")
    gate.set()
    await eventually(lambda: port.stats()["rpc_pending"] == 0, "the second join answered")
    assert [entry[0] for entry in world.log if entry[1] == "a"] == ["emit", "join", "join"]
    assert await port.publish("r", "a", "offer") == "answer to offer"


async def test_a_room_moves_when_its_node_expires_and_participants_hear_it_first(world: World) -> None:
    ghost = await world.ghost("sfu-0-hung")  # sorts first: the first room goes there
    port = await world.port()
    join_a = asyncio.create_task(port.join("r", "a"))
    join_b = asyncio.create_task(port.join("r", "b", subscribe=False))
    await eventually(lambda: port.stats()["participants"] == 2, "both joins sent")
    await world.sfu_node("sfu-b")
    await ghost.close(deregister=False)  # stops heart-beating: dead after the TTL
    for join in (join_a, join_b):
        with pytest.raises(RemoteMediaError):
            await join  # the move fails what was waiting on the dead node at once
    sfu = world.sfus["sfu-b"]
    await eventually(lambda: {p for op, _, p in sfu.done if op == "join"} == {"a", "b"}, "both joined on sfu-b")
    for participant in ("a", "b"):
        told = world.log.index(("emit", participant, "reconnect", "media"))
        joined = world.log.index(("join", participant))
        assert told < joined, world.log
    assert port.stats()["room_moves"] == 1
    # Requests follow the room.
    assert await port.publish("r", "a", "again") == "answer to again"


async def test_closing_fails_pending_calls_at_once(world: World) -> None:
    await world.ghost("sfu-hung")
    port = await world.port()
    call = asyncio.create_task(port.join("r", "a"))
    await eventually(lambda: port.stats()["rpc_pending"] == 1, "the join in flight")
    started = time.monotonic()
    await port.close()
    with pytest.raises(RemoteMediaError) as closed:
        await call
    assert closed.value.code == "sfu-unavailable"
    assert time.monotonic() - started < RPC_TIMEOUT


async def test_a_participant_adopted_from_another_node_moves_with_its_room(world: World) -> None:
    first = await world.sfu_node("sfu-a")
    old_home = await world.port("sig-1")
    await old_home.join("r", "a", subscribe=False)
    await old_home.close()  # its session resumed elsewhere: sig-1 is gone
    new_home = await world.port("sig-2")
    await new_home.adopt("r", "a", subscribe=False)
    assert not [e for e in world.log if e[0] == "emit"], "adopting resets nobody's media"
    assert await new_home.publish("r", "a", "offer") == "answer to offer"
    await world.sfu_node("sfu-b")
    await first.close()  # deregisters: the room moves at the next check
    await eventually(lambda: world.sfus["sfu-b"].joined == {("r", "a")}, "a joined on sfu-b")
    assert world.sfus["sfu-b"].subscribe == {"a": False}
    assert ("emit", "a", "reconnect", "media") in world.log


async def test_leave_reaches_the_sfu_node_even_for_a_participant_joined_elsewhere(world: World) -> None:
    await world.sfu_node("sfu-a")
    joined_here = await world.port("sig-1")
    await joined_here.join("r", "a")
    elsewhere = await world.port("sig-2")
    await elsewhere.leave("r", "a")
    await eventually(lambda: ("leave", "a") in world.log, "the SFU node ran the leave")
    assert world.sfus["sfu-a"].joined == set()
