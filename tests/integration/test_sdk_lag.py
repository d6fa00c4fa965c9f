"""The Python SDK when its application stops reading (STYLE: liveness never depends on the
application reading). Its reader keeps answering pings and holds, unacknowledged, what the
application has no room for; the server keeps it for replay, and the resume that follows once
the application caught up delivers it: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio

from signaling.client import Client, Closed, Resumed, SignalReceived
from signaling.core.config import HeartbeatConfig
from tests.conftest import PATIENCE, UNIT, ServerFactory, eventually, make_config

COUNT = 60


async def test_app_never_reads_link_stays_alive_nothing_lost(start_server: ServerFactory) -> None:
    server = await start_server(make_config(heartbeat=HeartbeatConfig(interval=2 * UNIT, timeout=6 * UNIT)))

    def pongs() -> float:
        return server.metrics.registry.get_sample_value("switchboard_messages_in_total", {"type": "pong"}) or 0.0

    bob = Client(server.url, "room", name="bob", max_events=8, ack_every=4)
    await bob.connect()
    async with Client(server.url, "room", name="alice") as alice:
        assert bob.peer_id is not None
        for i in range(COUNT):
            await alice.signal(bob.peer_id, {"n": i})
        await alice.leave()
    # Bob's application reads nothing; the server stamps everything for him (his buffer of 8
    # filled long before).
    [live] = server.hub.sessions()
    await eventually(lambda: live.session.last_seq >= COUNT, what="every signal stamped for bob")
    # Many silence timeouts pass: only bob is connected, and his pongs keep coming.
    before = pongs()
    await eventually(lambda: pongs() >= before + 10, timeout=PATIENCE, what="bob's pongs over 10 ping intervals")
    assert bob.held > 0  # what did not fit waits at the server, unacknowledged
    assert server.metrics.registry.get_sample_value("switchboard_heartbeat_timeouts_total") in (None, 0.0)
    assert len(server.hub.sessions()) == 1 and server.hub.sessions()[0].conn is not None

    # Now the application reads: every signal arrives, in order, once.
    got: list[int] = []
    resumed = 0
    async with asyncio.timeout(PATIENCE):
        while len(got) < COUNT:
            event = await bob.next_event()
            assert not isinstance(event, Closed), event
            if isinstance(event, SignalReceived):
                got.append(event.data["n"])
            elif isinstance(event, Resumed):
                resumed += 1
    assert got == list(range(COUNT))
    assert resumed >= 1 and bob.rejoins == 0
    await bob.close()
