"""A cluster on loopback: one real redis-server, SFU node and signaling node processes.

The redis-server fixture and the time unit come from tests/backend (imported, not copied); each
test gets a fresh key prefix, so tests share the session's server without seeing each other.
Nodes run with cluster timings in test units: heartbeat every 10 units, dead after 40 (2 s at
the default scale), failover check every 5.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from signaling.cluster.registry import NodeRegistry
from tests.backend.conftest import PATIENCE, UNIT, RedisServer, _free_port, prefix, redis_server
from tests.cluster.procs import NodeProcess, Processes
from tests.media.conftest import _collect_garbage, _loopback_only
from tests.media.peers import Participant

__all__ = ["PATIENCE", "UNIT", "_collect_garbage", "_loopback_only", "prefix", "redis_server"]

LOOPBACK = "127.0.0.1"

#: Registry heartbeat, node TTL and failover check of every node a test starts.
HEARTBEAT = 10 * UNIT
NODE_TTL = 40 * UNIT
FAILOVER_INTERVAL = 5 * UNIT
#: A media call's deadline: far above a negotiation on a loaded box, far below the test timeout.
RPC_TIMEOUT = 100 * UNIT
DRAIN_TIMEOUT = 20 * UNIT

_FAILED = pytest.StashKey[bool]()

P = TypeVar("P", bound=Participant)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Remember whether a test failed, so its processes' logs are printed at teardown."""
    report = yield
    if report.failed:  # type: ignore[attr-defined]
        item.stash[_FAILED] = True
    return report


@dataclass
class Cluster:
    """Starts nodes of one cluster (one key prefix) and reads its registry."""

    redis_url: str
    prefix: str
    procs: Processes
    registries: list[NodeRegistry] = field(default_factory=list)

    def timings(self) -> list[str]:
        return [
            "--set", f"redis_prefix={self.prefix}",
            "--set", f"cluster.heartbeat_interval={HEARTBEAT}",
            "--set", f"cluster.node_ttl={NODE_TTL}",
            "--set", f"cluster.failover_interval={FAILOVER_INTERVAL}",
            "--set", f"cluster.rpc_timeout={RPC_TIMEOUT}",
            # Teardown stops nodes with SIGTERM: a drain must not outlast its deadline there.
            "--set", f"drain_timeout={DRAIN_TIMEOUT}",
        ]

    async def sfu(self, node_id: str, *, capacity: int = 8, args: Sequence[str] = ()) -> NodeProcess:
        """An SFU node gathering ICE on 127.0.0.1 only; ready once registered."""
        port = _free_port()
        argv = [
            "sfu", "--redis", self.redis_url, "--node-id", node_id, "--host", LOOPBACK, "--port", str(port),
            "--ice-host", LOOPBACK, "--ice-allow-peer", "127.0.0.0/8", "--capacity", str(capacity),
            *self.timings(), *args,
        ]
        return await self.procs.start(node_id, argv, ready_url=f"http://{LOOPBACK}:{port}/readyz")

    async def signaling(self, node_id: str, *, args: Sequence[str] = ()) -> tuple[NodeProcess, str]:
        """A signaling node (media through the SFU nodes); returns it and its ``/ws`` URL."""
        port = _free_port()
        argv = [
            "serve", "--redis", self.redis_url, "--node-id", node_id, "--host", LOOPBACK, "--port", str(port),
            "--log-level", "info", *self.timings(), *args,
        ]
        node = await self.procs.start(node_id, argv, ready_url=f"http://{LOOPBACK}:{port}/readyz")
        return node, f"ws://{LOOPBACK}:{port}/ws"

    def registry(self) -> NodeRegistry:
        """A registry client of this cluster (never registers itself); closed at teardown."""
        registry = NodeRegistry(self.redis_url, key_prefix=self.prefix, heartbeat_interval=HEARTBEAT, ttl=NODE_TTL)
        self.registries.append(registry)
        return registry


@pytest.fixture
async def procs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Processes]:
    group = Processes(tmp_path_factory.mktemp("nodes"))
    yield group
    await group.close(show_logs=request.node.stash.get(_FAILED, False))


@pytest.fixture
async def cluster(redis_server: RedisServer, prefix: str, procs: Processes) -> AsyncIterator[Cluster]:
    made = Cluster(redis_server.url, prefix, procs)
    yield made
    for registry in made.registries:
        await registry.close(deregister=False)


ClusterFactory = Callable[[], Cluster]


class Participants:
    """Started participants of a test; each one leaves and closes at teardown (before the nodes
    stop: the fixture depends on ``cluster``)."""

    def __init__(self) -> None:
        self.started: list[Participant] = []

    async def start(self, participant: P) -> P:
        self.started.append(participant)
        await participant.start()
        return participant

    async def close(self) -> None:
        errors: list[BaseException] = []
        for participant in reversed(self.started):
            try:
                await participant.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
async def participants(cluster: Cluster) -> AsyncIterator[Participants]:
    made = Participants()
    yield made
    await made.close()
