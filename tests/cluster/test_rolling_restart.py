"""A rolling restart of a whole cluster under load: every node drained and restarted in turn.

Real processes on loopback: redis-server, three ``switchboard serve --redis`` signaling nodes, two
``switchboard sfu`` nodes, all with an admin token. Two rooms, each with an aiortc publisher and
subscriber (Python SDK, given the three signaling URLs as behind a load balancer) that stream
numbered signals to each other the whole time. :class:`signaling.rolling.RollingRestart` (what
``switchboard admin rolling-restart`` runs) drains each node through its admin API, waits until it
is down, restarts it (here the test is the supervisor: the same command line again), waits until
it is ready, and goes on.

Asserts: every numbered signal arrived exactly once and in order in both directions, no session
was rejoined (same session ids; clients resumed), every room was handed over to the other SFU node
by the drain (``reconnect {scope: media}``, no registry expiry) and media flows at the end. No
timing is asserted.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from signaling.backoff import Backoff
from signaling.client import SignalReceived
from signaling.rolling import RollingRestart, Target, plan
from tests.cluster.conftest import UNIT, Cluster, Participants
from tests.cluster.media_peers import FailoverParticipant, FailoverPublisher, FailoverSubscriber
from tests.cluster.procs import POLL, NodeProcess, Processes
from tests.conftest import PATIENCE

TOKEN = "rolling-admin-token"
ADMIN = ("--admin-token", TOKEN)
#: Nothing here may be rate limited: each client sends a signal every few units.
SIGNALING_ARGS = (*ADMIN, "--set", "security.message_rate=100000", "--set", "security.message_burst=100000")
ROOMS = 2


def received(participant: FailoverParticipant, sender: str) -> list[int]:
    return [
        e.data["n"] for e in participant.events
        if isinstance(e, SignalReceived) and e.sender == sender and isinstance(e.data, dict) and "n" in e.data
    ]


async def stream_numbers(sender: FailoverParticipant, to: str, stop: asyncio.Event, sent: list[int]) -> None:
    """Numbered signals to ``to`` every unit until ``stop``; each number is sent exactly once."""
    n = 0
    while not stop.is_set():
        n += 1
        await sender.client.signal(to, {"n": n})
        sent.append(n)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(UNIT):
                await stop.wait()


# Five process restarts (an SFU node imports aiortc) on a shared box: well above the default.
@pytest.mark.timeout(600)
async def test_rolling_restart_of_every_node_loses_nothing_and_rejoins_nobody(
    cluster: Cluster, participants: Participants, procs: Processes
) -> None:
    current: dict[str, NodeProcess] = {}
    sfu_a, sfu_b = await asyncio.gather(cluster.sfu("sfu-a", args=ADMIN), cluster.sfu("sfu-b", args=ADMIN))
    current.update({"sfu-a": sfu_a, "sfu-b": sfu_b})
    urls: list[str] = []
    for name in ("sig-1", "sig-2", "sig-3"):
        node, url = await cluster.signaling(name, args=SIGNALING_ARGS)
        current[name] = node
        urls.append(url)
    registry = cluster.registry()

    pubs: list[FailoverPublisher] = []
    subs: list[FailoverSubscriber] = []
    for i in range(ROOMS):
        room = f"room-{i}"

        def rotated(k: int) -> list[str]:
            return urls[k % 3:] + urls[: k % 3]

        subs.append(await participants.start(
            FailoverSubscriber(rotated(2 * i), room, f"sub-{i}", backoff=Backoff(base=UNIT, cap=10 * UNIT))
        ))
        pubs.append(await participants.start(
            FailoverPublisher(rotated(2 * i + 1), room, f"pub-{i}", backoff=Backoff(base=UNIT, cap=10 * UNIT))
        ))
    for sub in subs:
        await sub.wait_frames(10)
    placement = {f"room-{i}": await registry.placement(f"room-{i}") for i in range(ROOMS)}
    sessions = {p.name: p.session_id for p in participants.started}

    stop = asyncio.Event()
    sent: dict[str, list[int]] = {}
    senders: list[asyncio.Task[None]] = []
    for pub, sub in zip(pubs, subs, strict=True):
        for a, b in ((pub, sub), (sub, pub)):
            sent[a.name] = []
            senders.append(asyncio.create_task(stream_numbers(a, b.peer_id, stop, sent[a.name])))

    async def restart(target: Target) -> None:
        old = current[target.node]
        await old.wait_exit()
        assert old.returncode == 0, f"{target.node} exited with {old.returncode} after its drain"
        current[target.node] = await procs.restart(old, patience=3 * PATIENCE)

    listed = [{"node": n.id, "kind": n.kind, "address": n.address} for n in await registry.nodes()]
    targets = plan(listed)
    assert [t.node for t in targets] == ["sig-1", "sig-2", "sig-3", "sfu-a", "sfu-b"]
    try:
        async with aiohttp.ClientSession() as http:
            runner = RollingRestart(http, TOKEN, restart, node_timeout=3 * PATIENCE, poll=POLL, report=print)
            results = await runner.run(targets)
        assert all(r.command_ran for r in results)
        # Media flows at the end: every subscriber decodes more frames after the last restart.
        for sub in subs:
            await sub.wait_frames(sub.frames() + 10)
    finally:
        stop.set()
        await asyncio.gather(*senders)

    # Every numbered signal arrived exactly once, in order, both ways.
    for pub, sub in zip(pubs, subs, strict=True):
        for receiver, sender in ((sub, pub), (pub, sub)):
            want = sent[sender.name]
            await receiver.wait_for(lambda r=receiver, s=sender, w=want: len(received(r, s.peer_id)) >= len(w),
                                    what=f"{len(want)} signals from {sender.name}")
            assert received(receiver, sender.peer_id) == want, f"{receiver.name} from {sender.name}"
    # Nobody rejoined: same sessions, every client resumed (each signaling node went away once).
    for participant in participants.started:
        assert participant.session_id == sessions[participant.name]
        assert participant.client.rejoins == 0, participant.name
        assert participant.client.resumes >= 1, participant.name
    # sfu-a goes first: a room on it moves to sfu-b, then back when sfu-b is drained; a room on
    # sfu-b moves once. Each move is a hand-over (one reconnect {scope: media} per client).
    for i, (pub, sub) in enumerate(zip(pubs, subs, strict=True)):
        moves = 2 if placement[f"room-{i}"] == "sfu-a" else 1
        assert (len(sub.reconnects_at), len(pub.reconnects_at)) == (moves, moves), placement
        assert await registry.placement(f"room-{i}") == "sfu-a"
