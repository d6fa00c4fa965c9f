"""A signaling node stalled (SIGSTOP) past the point where the cluster reaps it: when it wakes
up it must learn it was reaped and end its sessions (split brain otherwise), and nothing its
inbox had accepted is dropped without the senders being told.

Real node processes on one real Redis, shortened TTLs; the clients are the Python SDK. The
clients' heartbeat timeout is longer than the stall (as in the issue: with a short one the client
would leave the stalled node and resume elsewhere before the reaping).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from signaling.client import Client, ErrorReceived, PeerJoined, PeerLeft, Rejoined, SignalReceived
from signaling.core.backoff import Backoff
from tests.backend.conftest import UNIT
from tests.cluster.conftest import Cluster
from tests.conftest import PATIENCE

GRACE = 20 * UNIT
NODE_ARGS = (
    "--no-sfu",
    "--set", "security.message_rate=100000", "--set", "security.message_burst=100000",
    "--set", f"session.grace_period={GRACE}", "--set", f"session.reconnecting_notice_after={5 * UNIT}",
    "--set", f"heartbeat.interval={20 * UNIT}", "--set", f"heartbeat.timeout={2000 * UNIT}",
)


class Recorder:
    """Every event of one client, with a wake-up."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.events: list[Any] = []
        self._changed = asyncio.Event()

    async def run(self) -> None:
        async for event in self.client:
            self.events.append(event)
            self._changed.set()

    async def until(self, predicate: Any, what: str) -> None:
        try:
            async with asyncio.timeout(PATIENCE):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; events: {self.events[-10:]}") from None

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


async def test_a_node_stalled_past_reaping_fences_itself_and_its_clients_rejoin(cluster: Cluster) -> None:
    stalled, url_a = await cluster.signaling("sig-a", args=NODE_ARGS)
    _other, url_b = await cluster.signaling("sig-b", args=NODE_ARGS)
    alice = Client(url_a, "room", name="alice", backoff=Backoff(base=UNIT, cap=10 * UNIT))
    bob = Client(url_b, "room", name="bob", backoff=Backoff(base=UNIT, cap=10 * UNIT))
    await alice.connect()
    await bob.connect()
    old_alice, bob_peer = alice.peer_id, bob.peer_id
    assert old_alice is not None and bob_peer is not None
    a, b = Recorder(alice), Recorder(bob)
    listeners = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
    assert stalled.proc is not None
    try:
        for n in range(1, 11):
            await bob.signal(old_alice, {"n": n})
        await a.until(lambda: len(a.of(SignalReceived)) == 10, "the first 10 signals")

        stalled.proc.send_signal(signal.SIGSTOP)
        try:
            # Accepted into sig-a's inbox while sig-a sleeps (bob's node confirms them).
            for n in range(11, 61):
                await bob.signal(old_alice, {"n": n})
            # sig-b's reaper removes alice after the node TTL and the grace period: bob is told.
            await b.until(lambda: any(e.peer == old_alice for e in b.of(PeerLeft)), "peer-left for alice")
            told = next(e for e in b.of(PeerLeft) if e.peer == old_alice)
            assert told.reason == "node-lost"
            told_at = b.events.index(told)
            # From now on alice is unknown: a sender is told at once.
            await bob.signal(old_alice, {"n": 61})
            await b.until(lambda: any(e.code == "unknown-peer" for e in b.of(ErrorReceived)), "unknown-peer for alice")
        finally:
            stalled.proc.send_signal(signal.SIGCONT)

        # sig-a wakes up, finds it was reaped, ends alice's session (4011): she rejoins as a new
        # peer, and bob hears of the new one; the old one never comes back.
        await a.until(lambda: bool(a.of(Rejoined)), "alice to rejoin")
        new_alice = alice.peer_id
        assert new_alice is not None and new_alice != old_alice
        await b.until(lambda: any(e.peer == new_alice for e in b.of(PeerJoined)), "peer-joined for the new alice")
        await alice.signal(bob_peer, {"n": "hello"})
        await b.until(lambda: any(e.data == {"n": "hello"} for e in b.of(SignalReceived)), "the new alice's signal")

        # No split brain: after bob was told the old alice left, nothing came from her, and bob
        # never saw her again.
        after = b.events[told_at + 1:]
        assert not [e for e in after if isinstance(e, SignalReceived) and e.sender == old_alice]
        assert not [e for e in after if isinstance(e, PeerJoined) and e.peer == old_alice]
        # What sig-a's inbox had accepted was delivered (in order, once) or lost with its
        # receiver, which bob was told about; nothing was delivered twice.
        got = [e.data["n"] for e in a.of(SignalReceived) if e.sender == bob_peer]
        assert got == sorted(set(got)) and set(got) <= set(range(1, 61))
        assert alice.rejoins == 1 and bob.rejoins == 0
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        await alice.close()
        await bob.close()
