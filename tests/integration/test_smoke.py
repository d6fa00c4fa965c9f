from __future__ import annotations

import asyncio

from signaling.client import Client, Joined, PeerJoined, SignalReceived
from tests.conftest import PATIENCE, RunningServer


async def next_of(client: Client, kind: type) -> object:
    async with asyncio.timeout(PATIENCE):
        while True:
            event = await client.next_event()
            if isinstance(event, kind):
                return event


async def test_two_sdk_clients_exchange_signals(server: RunningServer) -> None:
    async with Client(server.url, "room1", name="alice") as alice, Client(server.url, "room1", name="bob") as bob:
        joined = await next_of(bob, Joined)
        assert isinstance(joined, Joined)
        assert joined.peers == {alice.peer_id: "alice"}
        pj = await next_of(alice, PeerJoined)
        assert pj == PeerJoined(bob.peer_id, "bob")
        assert bob.peer_id is not None
        await alice.signal(bob.peer_id, {"sdp": "v=0", "kind": "offer"})
        got = await next_of(bob, SignalReceived)
        assert isinstance(got, SignalReceived)
        assert got.sender == alice.peer_id and got.data == {"sdp": "v=0", "kind": "offer"}
