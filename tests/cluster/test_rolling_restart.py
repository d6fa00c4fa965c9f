"""A rolling restart of a whole cluster under load: every node drained and restarted in turn
(the full run is ``slow``; the CLI test with two signaling nodes runs by default).

Real processes on loopback: redis-server, three ``switchboard serve --redis`` signaling nodes, two
``switchboard sfu`` nodes, all with an admin token. Two rooms, each with an aiortc publisher and
subscriber (Python SDK, given the three signaling URLs as behind a load balancer) that stream
numbered signals to each other the whole time. :class:`signaling.tools.rolling.RollingRestart` (what
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
import json
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from signaling.client import Client, SignalReceived
from signaling.core.backoff import Backoff
from signaling.tools.rolling import RollingRestart, Target, plan
from tests.cluster.conftest import UNIT, Cluster, Participants
from tests.cluster.media_peers import FailoverParticipant, FailoverPublisher, FailoverSubscriber
from tests.cluster.procs import POLL, START_PATIENCE, NodeProcess, Processes
from tests.conftest import PATIENCE

TOKEN = "rolling-admin-token"
#: A drain waits for its clients to resume elsewhere (its rooms to move): on a loaded box that can
#: take far longer than the cluster fixture's drain timeout, and what is left at the deadline ends.
ADMIN = ("--admin-token", TOKEN, "--set", f"drain_timeout={PATIENCE}")
#: Nothing here may be rate limited: each client sends a signal every few units.
SIGNALING_ARGS = (*ADMIN, "--set", "security.message_rate=100000", "--set", "security.message_burst=100000")
ROOMS = 2


async def stop_and_start(procs: Processes, old: NodeProcess, lingered: list[str]) -> NodeProcess:
    """What ``systemctl restart`` does to a drained node: wait for it to exit (its drain is over,
    it is no longer serving), kill it if it lingers in shutdown (systemd's ``TimeoutStopSec``:
    nothing is lost, its sessions and rooms are elsewhere already), start it again."""
    try:
        code = await old.wait_exit(patience=PATIENCE)
    except TimeoutError:
        lingered.append(old.name)
        old.kill()
        code = 0
        await old.wait_exit()
    assert code == 0, f"{old.name} exited with {code} after its drain:\n{old.log_text()}"
    return await procs.restart(old)


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


# Five process restarts (an SFU node imports aiortc) and media: about a minute on an idle box,
# several on a loaded one. The default suite keeps the CLI test below and, in test_sfu_nodes.py,
# the SFU hand-over without media.
@pytest.mark.slow
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

    lingered: list[str] = []

    async def restart(target: Target) -> None:
        current[target.node] = await stop_and_start(procs, current[target.node], lingered)

    listed = [{"node": n.id, "kind": n.kind, "address": n.address} for n in await registry.nodes()]
    targets = plan(listed)
    assert [t.node for t in targets] == ["sig-1", "sig-2", "sig-3", "sfu-a", "sfu-b"]
    try:
        async with aiohttp.ClientSession() as http:
            runner = RollingRestart(http, TOKEN, restart, node_timeout=START_PATIENCE + PATIENCE, poll=POLL, report=print)
            results = await runner.run(targets)
        assert all(r.command_ran for r in results)
        print(f"drained processes killed after lingering in shutdown: {lingered or 'none'}")
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


async def supervise(procs: Processes, current: dict[str, NodeProcess], directory: Path, stop: asyncio.Event) -> list[str]:
    """A stand-in for systemd: ``--restart-cmd`` touches ``<node>.start``; this starts the node's
    command line again once its drained process has exited. Returns the nodes it restarted."""
    restarted: list[str] = []
    while not stop.is_set():
        for marker in await asyncio.to_thread(lambda: sorted(directory.glob("*.start"))):
            node = marker.name.removesuffix(".start")
            await asyncio.to_thread(marker.unlink)
            current[node] = await stop_and_start(procs, current[node], [])
            restarted.append(node)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLL):
                await stop.wait()
    return restarted


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signaling", "admin", *args, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.timeout(300)
async def test_the_cli_restarts_signaling_nodes_one_by_one_and_refuses_mistakes(
    cluster: Cluster, procs: Processes, tmp_path: Path
) -> None:
    """``switchboard admin rolling-restart`` as an operator runs it (its own process, a shell
    command to start each node): two signaling nodes restarted while two clients stream numbered
    signals; nothing lost, nothing twice, nobody rejoined. Mistakes: exit 2, one line, nothing
    drained."""
    args = (*SIGNALING_ARGS, "--no-sfu")
    one, url_1 = await cluster.signaling("sig-1", args=args)
    two, url_2 = await cluster.signaling("sig-2", args=args)
    current = {"sig-1": one, "sig-2": two}
    env = {"SWITCHBOARD_ADMIN_URL": url_1, "SWITCHBOARD_ADMIN_TOKEN": TOKEN}
    restart_cmd = f"touch {tmp_path}/{{node}}.start"

    for bad, names in (
        ((), "--restart-cmd"),
        (("--restart-cmd", "systemctl restart {name}"), "{name}"),
        (("--restart-cmd", restart_cmd, "--only", "sig-9"), "sig-9"),
    ):
        code, out, err = await run_cli("rolling-restart", "--yes", *bad, env=env)
        assert code == 2, (bad, out, err)
        assert names in err and len(err.strip().splitlines()) == 1, err
    assert one.running and two.running

    fast = Backoff(base=UNIT, cap=10 * UNIT)
    alice = Client([url_1, url_2], "room", name="alice", backoff=fast)
    bob = Client([url_2, url_1], "room", name="bob", backoff=Backoff(base=UNIT, cap=10 * UNIT))
    await alice.connect()
    await bob.connect()
    assert alice.peer_id is not None and bob.peer_id is not None
    sessions = (alice.session_id, bob.session_id)
    stop = asyncio.Event()
    sent: dict[str, list[int]] = {"alice": [], "bob": []}
    got: dict[str, list[int]] = {"alice": [], "bob": []}

    async def stream(client: Client, to: str, name: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await client.signal(to, {"n": n})
            sent[name].append(n)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(UNIT):
                    await stop.wait()
        await client.signal(to, {"end": True})

    async def collect(client: Client, name: str) -> None:
        async with asyncio.timeout(6 * PATIENCE):
            async for event in client:
                if isinstance(event, SignalReceived):
                    if event.data.get("end"):
                        return
                    got[name].append(event.data["n"])

    supervisor_stop = asyncio.Event()
    supervisor = asyncio.create_task(supervise(procs, current, tmp_path, supervisor_stop))
    tasks = [
        asyncio.create_task(stream(alice, bob.peer_id, "alice")), asyncio.create_task(stream(bob, alice.peer_id, "bob")),
        asyncio.create_task(collect(bob, "bob")), asyncio.create_task(collect(alice, "alice")),
    ]
    try:
        code, out, err = await run_cli(
            "--json", "rolling-restart", "--restart-cmd", restart_cmd, "--yes", "--node-timeout", str(START_PATIENCE + PATIENCE), env=env
        )
        assert code == 0, (out, err)
        report = json.loads(out)
        assert [(n["node"], n["command_ran"]) for n in report["nodes"]] == [("sig-1", True), ("sig-2", True)]
        assert "sig-1: ready after" in err and "sig-2: ready after" in err
    finally:
        stop.set()
        supervisor_stop.set()
        await asyncio.gather(*tasks)
        restarted = await supervisor
        await alice.close()
        await bob.close()
    assert restarted == ["sig-1", "sig-2"]
    assert got["bob"] == sent["alice"] and got["alice"] == sent["bob"]
    assert (alice.session_id, bob.session_id) == sessions
    assert (alice.rejoins, bob.rejoins) == (0, 0) and alice.resumes >= 1 and bob.resumes >= 1
