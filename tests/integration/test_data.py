"""Application messages (``data``, the page's chat) over the signaling session: fan-out, addressing,
limits, grants, and exactly-once delivery in order across a signaling cut."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from signaling.client import Client, DataReceived, ErrorReceived
from signaling.core.auth import create_token
from tests.conftest import (
    PATIENCE,
    UNLIMITED,
    RunningServer,
    ServerFactory,
    eventually,
    make_config,
)
from tests.raw import Raw


async def expect(raw: Raw, kind: str) -> dict[str, Any]:
    """The next ``kind`` message, past membership news (peer-joined, peer-left)."""
    while True:
        message = await raw.recv()
        if message["type"] not in ("peer-joined", "peer-left"):
            assert message["type"] == kind, message
            return message


async def test_data_goes_to_every_other_peer_or_to_the_named_ones(server: RunningServer) -> None:
    alice = await Raw.joined(server.url, "room", "alice")
    bob = await Raw.joined(server.url, "room", "bob")
    carol = await Raw.joined(server.url, "room", "carol")
    stranger = await Raw.joined(server.url, "elsewhere", "eve")
    await alice.send({"type": "data", "cseq": 1, "topic": "chat", "payload": {"text": "hello all"}})
    for who in (bob, carol):
        got = await expect(who, "data")
        assert got["from"] == alice.peer and got["topic"] == "chat" and got["payload"] == {"text": "hello all"}
        assert "to" not in got and isinstance(got["seq"], int)
    await alice.send({"type": "data", "cseq": 2, "topic": "chat", "payload": "psst", "to": [carol.peer]})
    got = await expect(carol, "data")
    assert got["payload"] == "psst" and got["to"] == [carol.peer]
    # Bob got nothing more; a peer of another room is unknown, like in signal.
    await alice.send({"type": "data", "cseq": 3, "topic": "chat", "payload": "x", "to": [stranger.peer, bob.peer]})
    error = await expect(alice, "error")
    assert error["code"] == "unknown-peer" and error["cseq"] == 3 and stranger.peer in error["message"]
    assert (await expect(bob, "data"))["payload"] == "x"
    await alice.send({"type": "data", "cseq": 4, "topic": "chat", "payload": "me", "to": [alice.peer]})
    assert (await expect(alice, "error"))["code"] == "self-target"
    for raw in (alice, bob, carol, stranger):
        await raw.close()


async def test_data_size_and_rate_limits_refuse_the_message_not_the_connection(start_server: ServerFactory) -> None:
    limits = dataclasses.replace(make_config().limits, max_data_bytes=100)
    server = await start_server(make_config(
        limits=limits, security=dataclasses.replace(UNLIMITED, data_rate=1.0, data_burst=3.0),
    ))
    alice = await Raw.joined(server.url, "room", "alice")
    bob = await Raw.joined(server.url, "room", "bob")
    await alice.send({"type": "data", "cseq": 1, "topic": "t", "payload": "x" * 200})
    error = await expect(alice, "error")
    assert (error["code"], error["cseq"]) == ("too-large", 1)
    for cseq in range(2, 7):
        await alice.send({"type": "data", "cseq": cseq, "topic": "t", "payload": cseq})
    refused = [await expect(alice, "error") for _ in range(2)]
    assert {(e["code"], e["cseq"]) for e in refused} == {("rate-limited", 5), ("rate-limited", 6)}
    assert all(e["retry_after_ms"] > 0 for e in refused)
    assert [(await expect(bob, "data"))["payload"] for _ in range(3)] == [2, 3, 4]
    # Still connected: signal goes on.
    await alice.send({"type": "signal", "cseq": 7, "to": bob.peer, "data": "still here"})
    assert (await expect(bob, "signal"))["data"] == "still here"
    await alice.close()
    await bob.close()


async def test_data_needs_the_data_or_signal_grant(start_server: ServerFactory) -> None:
    key = "k" * 40
    server = await start_server(make_config(security=dataclasses.replace(UNLIMITED, token_keys=(("k1", key),))))

    def token(grants: set[str]) -> str:
        return create_token(key, identity="u", room="room", grants=grants)

    viewer = await Raw.joined(server.url, "room", "viewer", token=token({"subscribe"}))
    chatter = await Raw.joined(server.url, "room", "chatter", token=token({"subscribe", "data"}))
    await viewer.send({"type": "data", "cseq": 1, "topic": "chat", "payload": "hi"})
    error = await expect(viewer, "error")
    assert (error["code"], error["cseq"]) == ("forbidden", 1)
    await chatter.send({"type": "data", "cseq": 1, "topic": "chat", "payload": "hi"})
    assert (await expect(viewer, "data"))["payload"] == "hi"
    await viewer.close()
    await chatter.close()


async def test_sdk_chat_arrives_once_and_in_order_across_a_signaling_cut(server: RunningServer) -> None:
    alice = Client(server.url, "room", name="alice")
    bob = Client(server.url, "room", name="bob")
    await alice.connect()
    await bob.connect()
    try:
        async def received(client: Client, count: int) -> list[tuple[str, object]]:
            got: list[tuple[str, object]] = []
            async with asyncio.timeout(PATIENCE):
                while len(got) < count:
                    event = await client.next_event()
                    assert not isinstance(event, ErrorReceived), event
                    if isinstance(event, DataReceived):
                        got.append((event.sender, event.payload))
            return got

        for i in range(5):
            await alice.send_data("chat", {"n": i})
        # Cut both sockets while messages are in flight both ways; sending goes on meanwhile.
        assert server.hub.disconnect(alice.session_id or "")
        assert server.hub.disconnect(bob.session_id or "")
        for i in range(5, 10):
            await alice.send_data("chat", {"n": i})
            await bob.send_data("chat", {"n": 100 + i}, to=[alice.peer_id or ""])
        got_bob = await received(bob, 10)
        got_alice = await received(alice, 5)
        assert got_bob == [(alice.peer_id, {"n": i}) for i in range(10)]
        assert got_alice == [(bob.peer_id, {"n": 100 + i}) for i in range(5, 10)]
        await eventually(lambda: alice.resumes >= 1 and bob.resumes >= 1)
        # Nothing more arrives: exactly once.
        await alice.send_data("chat", "end")
        assert await received(bob, 1) == [(alice.peer_id, "end")]
    finally:
        await alice.close()
        await bob.close()
