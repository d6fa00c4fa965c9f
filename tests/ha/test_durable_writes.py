"""Durable before confirmed, and a demoted primary, against a real primary + replica + sentinels.

A stalled replica (SIGSTOP: connected, silent) makes every ``WAIT`` time out: a relay is refused
(the client resends it after resuming; the resend is recognised as a duplicate), a session frame
stays queued (no client sees it) and the node is not ready, until the replica answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from signaling.backend.base import BackendUnavailable, Member, Written
from signaling.cluster.redis_backend import RedisBackend
from signaling.core.config import ClusterConfig, HeartbeatConfig
from tests.backend.conftest import UNIT, Inbox, wait_for
from tests.conftest import ServerFactory, make_config
from tests.ha.redis_ha import SERVICE, RedisHA, _command
from tests.raw import Raw

META = '{"peer":"p1","room":"room"}'


async def test_nothing_is_confirmed_before_the_replica_has_it(
    redis_ha: RedisHA, redis_backends: Callable[..., RedisBackend], prefix: str
) -> None:
    primary = redis_ha.primary_port()
    assert primary is not None
    replica = next(s for s in redis_ha.servers if s.port != primary)
    # A plain URL to the primary, with the wait asked for explicitly.
    backend = redis_backends(f"redis://127.0.0.1:{primary}/0", prefix, wait_replicas=1, wait_timeout=4 * UNIT)
    inbox = Inbox()
    await backend.start("n1", inbox)
    assert await backend.add_member(Member("p1", "alice", "room", "n1")) is not None
    assert await backend.add_member(Member("p2", "bob", "room", "n1")) is not None
    ledger = backend.session_ledger()
    assert ledger is not None
    done: list[tuple[int, Written]] = []

    def frame(seq: int) -> None:
        assert ledger.frames("s1", meta=META, tok="t", frames=[(seq, f"f{seq}")], last_cseq=0, acked=0,
                             done=lambda ok: done.append((seq, ok)))

    frame(1)
    await wait_for(lambda: done == [(1, Written.OK)], what="the first frame on the replica")
    assert await backend.send("p2", {"n": 1}, origin=("s1", 1)) is True
    await inbox.until(lambda: inbox.of("p2") == [{"n": 1}])

    replica.pause()
    try:
        # The relay lands on the primary but not on the replica: refused, not confirmed.
        with pytest.raises(BackendUnavailable, match="replica"):
            await backend.send("p2", {"n": 2}, origin=("s1", 2))
        frame(2)
        await wait_for(lambda: not ledger.healthy, what="the ledger to report the missing replica")
        assert done == [(1, Written.OK)]  # frame 2 has not gone anywhere
        assert not await backend.ready()
    finally:
        replica.resume()
    await wait_for(lambda: done == [(1, Written.OK), (2, Written.OK)], what="frame 2 once the replica is back")
    await wait_for(backend.ready, what="the node ready again")
    # The client resends cseq 2 after resuming: a duplicate, so peer p2 gets it once.
    assert await backend.send("p2", {"n": 2}, origin=("s1", 2)) is True
    assert await backend.send("p2", {"n": 3}, origin=("s1", 3)) is True
    await inbox.until(lambda: {"n": 3} in inbox.of("p2"))
    assert inbox.of("p2") == [{"n": 1}, {"n": 2}, {"n": 3}]


async def test_a_primary_without_replicas_does_not_stop_the_cluster(
    redis_ha: RedisHA, redis_backends: Callable[..., RedisBackend], prefix: str
) -> None:
    primary = redis_ha.primary_port()
    assert primary is not None
    replica = next(s for s in redis_ha.servers if s.port != primary)
    backend = redis_backends(redis_ha.url, prefix, wait_replicas=1, wait_timeout=4 * UNIT)
    inbox = Inbox()
    await backend.start("n1", inbox)
    await backend.add_member(Member("p2", "bob", "room", "n1"))
    replica.stop()  # gone, not stalled: the primary sees no replica and nothing can be promoted
    await wait_for(lambda: "connected_slaves:0" in _command(primary, "INFO", "replication"), what="the replica gone")
    for n in range(1, 4):
        assert await _send_eventually(backend, "p2", {"n": n})
    await inbox.until(lambda: len(inbox.of("p2")) == 3)
    assert backend.durable.connected == 0 and backend.durable.unreplicated > 0


async def _send_eventually(backend: RedisBackend, peer: str, message: dict[str, Any]) -> bool:
    """The first send after the replica left may still wait for it (one ``WAIT`` timeout)."""
    for _ in range(3):
        try:
            return await backend.send(peer, message)
        except BackendUnavailable:
            continue
    return False


async def test_a_demoted_primary_counts_as_unavailable_and_sentinel_clients_follow(
    redis_ha: RedisHA, redis_backends: Callable[..., RedisBackend], prefix: str
) -> None:
    old = redis_ha.primary_port()
    assert old is not None
    direct = redis_backends(f"redis://127.0.0.1:{old}/0", prefix)
    managed = redis_backends(redis_ha.url, prefix)
    await direct.start("direct", Inbox())
    await managed.start("managed", Inbox())
    assert await direct.ready() and await managed.ready()
    # A graceful failover: the old primary becomes a replica and refuses writes (READONLY).
    assert "+OK" in _command(redis_ha.sentinels[0].port, "SENTINEL", "FAILOVER", SERVICE)
    new = await asyncio.to_thread(redis_ha.wait_failover, old)
    await wait_for(lambda: "role:slave" in _command(old, "INFO", "replication"), what="the old primary demoted")
    # The direct client still reaches the old primary: PING works, writes do not; not ready.
    with pytest.raises(BackendUnavailable):
        await direct.add_member(Member("p9", "x", "room", "direct"))
    await wait_for(lambda: _not(direct.ready()), what="the node on the demoted primary to turn unready")
    # The Sentinel client follows the promotion, resyncs and writes.
    await wait_for(managed.ready, what="the Sentinel-managed node ready on the new primary")
    assert await managed.add_member(Member("p1", "y", "room", "managed")) is not None
    assert "role:master" in _command(new, "INFO", "replication")


async def _not(result: Any) -> bool:
    return not await result


async def test_a_ping_never_confirms_a_relay_still_waiting_for_the_replica(
    redis_ha: RedisHA, start_server: ServerFactory, prefix: str
) -> None:
    """A ping sent while a relay waits for the replica must not confirm that relay's cseq: if the
    relay then fails, the client must still hold the message to resend it (before the fix, pings
    confirmed every accepted cseq, in flight or not)."""
    primary = redis_ha.primary_port()
    assert primary is not None
    replica = next(s for s in redis_ha.servers if s.port != primary)
    wait_timeout = min(1.5, 20 * UNIT)
    config = make_config(
        redis_url=f"redis://127.0.0.1:{primary}/0",
        redis_prefix=prefix,
        heartbeat=HeartbeatConfig(interval=2 * UNIT, timeout=400 * UNIT, jitter=0.0),
        cluster=ClusterConfig(ledger_wait_replicas=1, ledger_wait_timeout=wait_timeout),
    )
    server = await start_server(config)
    alice = await Raw.joined(server.url, room="r", name="alice")
    bob = await Raw.joined(server.url, room="r", name="bob")
    try:
        await alice.send({"type": "signal", "to": bob.peer, "data": {"n": 1}, "cseq": 1})
        assert (await bob.expect("signal"))["data"] == {"n": 1}
        while (await alice.recv(skip_pings=False)).get("last_cseq") != 1:
            pass
        replica.pause()
        try:
            await alice.send({"type": "signal", "to": bob.peer, "data": {"n": 2}, "cseq": 2})
            confirmed: list[int] = []
            with contextlib.suppress(ConnectionError):
                while True:  # until the refused relay closes the socket (1011)
                    message = await alice.recv(skip_pings=False)
                    if message["type"] == "ping":
                        confirmed.append(message["last_cseq"])
            assert alice.ws.close_code == 1011
        finally:
            replica.resume()
        assert len(confirmed) >= 3, "no ping while the relay waited: the test proves nothing"
        assert max(confirmed) == 1, confirmed
        async with aiohttp.ClientSession() as http, http.get(server.http_url + "/metrics") as response:
            text = await response.text()
        assert "switchboard_redis_replicas_wanted 1.0" in text
        assert "switchboard_redis_replicas_connected 1.0" in text
    finally:
        await alice.close()
        await bob.close()
