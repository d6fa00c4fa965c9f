"""Fixtures of the high-availability tests: a Sentinel-managed Redis (see ``redis_ha.py``) and the
cluster helpers of tests/cluster (node processes), pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.backend.conftest import prefix, redis_backends, registries
from tests.cluster.conftest import Cluster, Participants, procs, pytest_runtest_makereport
from tests.cluster.procs import Processes
from tests.ha.redis_ha import RedisHA
from tests.media.conftest import _collect_garbage, _loopback_only

__all__ = [
    "_collect_garbage", "_loopback_only", "prefix", "procs", "pytest_runtest_makereport", "redis_backends", "registries",
]


@pytest.fixture
def redis_ha_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., RedisHA]]:
    """Start primary + replica + 3 sentinels (``aof=True``: with AOF); all stopped at teardown."""
    made: list[RedisHA] = []

    def make(*, aof: bool = False) -> RedisHA:
        ha = RedisHA(tmp_path / f"ha-{len(made)}", aof=aof)
        ha.directory.mkdir(parents=True)
        made.append(ha)
        ha.start()
        return ha

    yield make
    for ha in made:
        if request.node.stash.get(_failed_key(), False):
            print(ha.logs())
        ha.close()


def _failed_key() -> pytest.StashKey[bool]:
    from tests.cluster.conftest import _FAILED

    return _FAILED


@pytest.fixture
def redis_ha(redis_ha_factory: Callable[..., RedisHA]) -> RedisHA:
    return redis_ha_factory()


@pytest.fixture
async def ha_cluster(redis_ha: RedisHA, prefix: str, procs: Processes) -> AsyncIterator[Cluster]:
    """Node processes of one cluster whose ``--redis`` is the Sentinel URL."""
    made = Cluster(redis_ha.url, prefix, procs)
    yield made
    for registry in made.registries:
        await registry.close(deregister=False)


@pytest.fixture
async def ha_participants(ha_cluster: Cluster) -> AsyncIterator[Participants]:
    """Media participants (tests/cluster); each leaves and closes before the nodes stop."""
    made = Participants()
    yield made
    await made.close()
