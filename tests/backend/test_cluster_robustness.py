"""A cluster node survives what one session's traffic carries, and Redis outages (issue 14).

Real redis-server, real hub and WebSockets on loopback. Each test watches *bystanders*: sessions
that did nothing wrong must keep receiving.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace

import aiohttp

from signaling.core.config import ServerConfig
from tests.backend.conftest import RedisServer, fast_backend
from tests.conftest import PATIENCE, RunningServer, ServerFactory, make_config
from tests.raw import Raw


def node_config(node_id: str) -> ServerConfig:
    return replace(make_config(), node_id=node_id)


async def _relays(sender: Raw, receiver: Raw, n: int) -> None:
    await sender.send({"type": "signal", "to": receiver.peer, "data": {"n": n}, "cseq": n})
    got = await receiver.expect("signal")
    assert got["data"] == {"n": n} and got["from"] == sender.peer


async def _ready(server: RunningServer) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{server.http_url}/readyz") as resp:
        return resp.status


async def test_an_unencodable_message_is_dropped_and_every_session_keeps_receiving(
    redis_server: RedisServer, prefix: str, start_server: ServerFactory
) -> None:
    """A message carrying a lone surrogate reaches a session through the backend (the path a
    relayed signal takes). The hub refuses to stamp it (nothing unencodable reaches a replay
    buffer or the ledger): that one message is dropped with an error log, and every session of
    the node, the addressee included, keeps receiving; /readyz stays 200."""
    node = await start_server(node_config("sig-1"), backend=fast_backend(redis_server.url, prefix))
    victim = await Raw.joined(node.url, "target", "victim")
    neighbour = await Raw.joined(node.url, "target", "neighbour")
    alice = await Raw.joined(node.url, "elsewhere", "alice")
    bob = await Raw.joined(node.url, "elsewhere", "bob")
    try:
        await victim.expect("peer-joined")
        await alice.expect("peer-joined")
        await _relays(alice, bob, 1)

        poison = {"type": "signal", "from": neighbour.peer, "data": "\ud800"}
        assert await node.hub.backend.send(victim.peer, poison)

        # The addressee is not harmed: the next signal is the next thing it receives.
        await _relays(neighbour, victim, 1)
        for n in range(2, 12):
            await _relays(alice, bob, n)
            await _relays(bob, alice, n)
        await neighbour.send({"type": "signal", "to": alice.peer, "data": {}, "cseq": 2})
        assert (await neighbour.expect("error"))["code"] == "unknown-peer"  # another room
        assert await _ready(node) == 200
    finally:
        for raw in (victim, neighbour, alice, bob):
            await raw.close()


async def test_the_ledger_writer_fails_only_the_session_whose_frame_cannot_be_stored(
    redis_server: RedisServer, prefix: str, redis_backends  # type: ignore[no-untyped-def]
) -> None:
    """Defence in depth below the hub: one batch holds a frame that is not valid UTF-8 for one
    session and good frames for another. Only that session's write fails; the other is written,
    and the writer goes on serving later batches."""
    from signaling.backend.base import Written
    from tests.backend.conftest import Inbox, wait_for

    backend = redis_backends(redis_server.url, prefix)
    await backend.start("sig-1", Inbox())
    ledger = backend.session_ledger()
    assert ledger is not None
    done: dict[str, list[Written]] = {"bad": [], "good": []}

    def write(session: str, seq: int, frame: str) -> None:
        assert ledger.frames(session, meta="{}", tok="t", frames=[(seq, frame)], last_cseq=0, acked=0,
                             done=done["bad" if session == "s-bad" else "good"].append)

    write("s-good", 1, '{"n":1}')
    write("s-bad", 1, '{"data":"\ud800"}')
    write("s-good", 2, '{"n":2}')
    await wait_for(lambda: len(done["good"]) == 2 and len(done["bad"]) == 1, what="both writes to settle")
    assert done == {"bad": [Written.FAILED], "good": [Written.OK, Written.OK]}
    write("s-good", 3, '{"n":3}')
    await wait_for(lambda: len(done["good"]) == 3, what="a later write")
    assert done["good"][-1] is Written.OK and ledger.working()


async def test_the_ledger_reports_a_writer_that_cannot_write(
    redis_factory, prefix: str, redis_backends  # type: ignore[no-untyped-def]
) -> None:
    """``working()`` (and with it /readyz) is False while queued writes cannot reach Redis."""
    from tests.backend.conftest import Inbox, wait_for

    redis = redis_factory()
    backend = redis_backends(redis.url, prefix)
    await backend.start("sig-1", Inbox())
    ledger = backend.session_ledger()
    assert ledger is not None and ledger.working()
    redis.kill()
    assert ledger.frames("s1", meta="{}", tok="t", frames=[(1, "{}")], last_cseq=0, acked=0)
    await wait_for(lambda: not ledger.working(), what="the ledger to report it cannot write")
    assert not await backend.ready()
    redis.start()
    await wait_for(ledger.working, what="the ledger to write again")
    await wait_for(backend.ready, what="the backend to be ready again")


async def test_a_redis_outage_during_a_grace_period_still_ends_it_with_one_peer_left(
    redis_factory, prefix: str, start_server: ServerFactory, caplog  # type: ignore[no-untyped-def]
) -> None:
    """Bob's socket drops; Redis dies before the grace task's ``peer-reconnecting`` notice and
    comes back empty. The task must not die on the outage: alice hears ``peer-left`` for bob
    once the grace period is over, exactly once, and a later joiner does not see bob."""
    import asyncio

    from tests.backend.conftest import wait_for
    from tests.conftest import UNIT

    caplog.set_level(logging.WARNING, logger="signaling")
    config = replace(make_config(), heartbeat=replace(make_config().heartbeat, timeout=1000 * UNIT))
    redis = redis_factory()
    one = await start_server(replace(config, node_id="sig-1"), backend=fast_backend(redis.url, prefix))
    two = await start_server(replace(config, node_id="sig-2"), backend=fast_backend(redis.url, prefix))
    alice = await Raw.joined(one.url, "room", "alice")
    bob = await Raw.joined(two.url, "room", "bob")
    carol: Raw | None = None
    try:
        await alice.expect("peer-joined")
        await bob.close()  # detached: the grace period starts on sig-2
        redis.kill()
        # The notice is due 10 units after the drop: it meets the outage (logged either way).
        await wait_for(
            lambda: any("peer-reconnecting" in r.getMessage() or r.getMessage().startswith("task grace:")
                        for r in caplog.records),
            what="the grace notice to meet the outage",
        )
        redis.start()
        seen: list[dict[str, object]] = []
        async with asyncio.timeout(PATIENCE):
            while not seen or seen[-1]["type"] != "peer-left":
                seen.append(await alice.recv())
        assert seen[-1] == {**seen[-1], "peer": bob.peer, "reason": "timeout"}
        # A joiner after the end does not see the ghost, and alice hears of it after peer-left.
        carol = await Raw.joined(two.url, "room", "carol")
        assert [p["id"] for p in carol.welcome["peers"]] == [alice.peer]
        rest = [await alice.recv()]
        assert rest[0]["type"] == "peer-joined", rest
        await carol.send({"type": "signal", "to": alice.peer, "data": "marker", "cseq": 1})
        while rest[-1]["type"] != "signal":
            rest.append(await alice.recv())
        assert [m["type"] for m in seen + rest].count("peer-left") == 1
    finally:
        for raw in (alice, bob, carol):
            if raw is not None:
                await raw.close()


async def test_no_unknown_peer_for_live_peers_across_a_redis_restart(
    redis_factory, prefix: str, start_server: ServerFactory, caplog  # type: ignore[no-untyped-def]
) -> None:
    """Redis restarts empty under two nodes while signals flow (a cross-node pair and a
    same-node pair). Until every node has written its members back, a live peer is missing in
    Redis: the nodes must wait for the resync, never tell a sender ``unknown-peer``."""
    import asyncio

    from signaling.client import Client, ErrorReceived, SignalReceived
    from signaling.core.backoff import Backoff
    from tests.backend.conftest import wait_for
    from tests.conftest import UNIT

    redis = redis_factory()
    one = await start_server(node_config("sig-1"), backend=fast_backend(redis.url, prefix))
    # sig-2 retries Redis every 10 units (no jitter): it resyncs about that long after sig-1, as
    # nodes do whose reconnect backoffs differ, while alice on sig-1 keeps signalling bob.
    slow = Backoff(base=10 * UNIT, cap=10 * UNIT, rng=_Ceiling())
    two = await start_server(node_config("sig-2"), backend=fast_backend(redis.url, prefix, backoff=slow))

    def client(url: str, name: str) -> Client:
        return Client(url, "room", name=name, backoff=Backoff(base=UNIT, cap=10 * UNIT))

    alice, bob, carol, dave = client(one.url, "alice"), client(two.url, "bob"), client(one.url, "carol"), client(one.url, "dave")
    pairs = [(alice, bob), (carol, dave)]
    received: dict[Client, list[int]] = {bob: [], dave: []}
    unknown: list[ErrorReceived] = []
    lifecycle: list[tuple[str, object]] = []  # reconnects and the like, for a failure message
    progress = asyncio.Event()

    async def listen(c: Client) -> None:
        async for event in c:
            if isinstance(event, SignalReceived) and c in received:
                received[c].append(event.data["n"])
            elif isinstance(event, ErrorReceived) and event.code == "unknown-peer":
                unknown.append(event)
            elif not isinstance(event, SignalReceived):
                lifecycle.append((c.name, event))
            progress.set()

    for c in (alice, bob, carol, dave):
        await c.connect()
    listeners = [asyncio.create_task(listen(c)) for c in (alice, bob, carol, dave)]
    sent = 0

    async def round_trip() -> None:
        """One signal per pair; wait until both arrived (or were refused)."""
        nonlocal sent
        sent += 1
        for sender, receiver in pairs:
            assert receiver.peer_id is not None
            await sender.signal(receiver.peer_id, {"n": sent})
        try:
            async with asyncio.timeout(PATIENCE):
                while not all(received[r] and received[r][-1] == sent for _, r in pairs) and not unknown:
                    progress.clear()
                    await progress.wait()
        except TimeoutError:
            raise AssertionError(f"signal {sent} stuck: received {[received[r][-3:] for _, r in pairs]}; {lifecycle}") from None

    try:
        for _ in range(20):
            await round_trip()
        caplog.set_level(logging.WARNING, logger="signaling.cluster.redis_backend")
        redis.kill()
        await wait_for(lambda: _both_unready(one, two), what="both nodes to notice the outage")
        await wait_for(lambda: all(any(f"node {n}: lost redis" in r.getMessage() for r in caplog.records)
                                   for n in ("sig-1", "sig-2")), what="both readers to lose redis")
        # In a thread: the nodes keep running (and failing to reconnect) while Redis starts.
        await asyncio.to_thread(redis.start)
        # Signals flow through the whole resync: until both nodes are ready, then 20 more.
        while not await _both_ready(one, two) and not unknown:
            await round_trip()
        during = sent - 20
        for _ in range(20):
            await round_trip()
        print(f"{2 * during} signals sent while the nodes resynced, {len(unknown)} unknown-peer")
        assert unknown == []
        for _, receiver in pairs:
            assert received[receiver] == list(range(1, sent + 1))
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        for c in (alice, bob, carol, dave):
            await c.close()


async def _both_unready(*servers: RunningServer) -> bool:
    return not any([await s.hub.backend.ready() for s in servers])


async def _both_ready(*servers: RunningServer) -> bool:
    return all([await s.hub.backend.ready() for s in servers])


class _Ceiling(random.Random):
    """Backoff jitter that always draws the ceiling: reconnect delays without chance."""

    def uniform(self, a: float, b: float) -> float:
        return b
