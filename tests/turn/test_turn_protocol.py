"""The STUN/TURN client without a server: scripted responses, then one loopback UDP socket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import pytest
from aioice import stun

from signaling.turn.client import TurnClient, UdpConnection, binding
from signaling.turn.protocol import (
    BadResponse,
    ErrorResponse,
    LongTermAuth,
    NoResponse,
    make_integrity_key,
    parse_allocation,
)

USERNAME, PASSWORD, REALM = "1700003600:alice", "pa55", "switchboard.test"
KEY = make_integrity_key(USERNAME, REALM, PASSWORD)

Responder = Callable[[stun.Message], stun.Message]


def answer(
    request: stun.Message,
    attrs: dict[str, object] | None = None,
    *,
    error: tuple[int, str] | None = None,
) -> stun.Message:
    """A response to ``request`` with the same method and transaction id."""
    response = stun.Message(
        message_method=request.message_method,
        message_class=stun.Class.ERROR if error else stun.Class.RESPONSE,
        transaction_id=request.transaction_id,
    )
    if error:
        response.attributes["ERROR-CODE"] = error
    response.attributes.update(attrs or {})
    return response


def signed(response: stun.Message, key: bytes = KEY) -> stun.Message:
    response.add_message_integrity(key)
    # Round-trip through bytes, as the client only ever sees parsed messages.
    return stun.parse_message(bytes(response))


def challenge(request: stun.Message, code: int = 401, nonce: bytes = b"n1") -> stun.Message:
    return stun.parse_message(
        bytes(answer(request, {"REALM": REALM, "NONCE": nonce}, error=(code, "Unauthorized")))
    )


def allocated(request: stun.Message, key: bytes = KEY) -> stun.Message:
    return signed(
        answer(
            request,
            {
                "XOR-RELAYED-ADDRESS": ("127.0.0.1", 50000),
                "XOR-MAPPED-ADDRESS": ("127.0.0.1", 40000),
                "LIFETIME": 600,
            },
        ),
        key,
    )


class ScriptedConnection:
    """A :class:`StunConnection` that answers from a script and records what was sent."""

    def __init__(self, *responders: Responder) -> None:
        self.responders = list(responders)
        self.sent: list[stun.Message] = []
        self.closed = 0

    async def request(self, message: stun.Message) -> stun.Message:
        parsed = stun.parse_message(bytes(message))  # exactly what would go on the wire
        self.sent.append(parsed)
        if not self.responders:
            raise NoResponse("script exhausted")
        return self.responders.pop(0)(parsed)

    async def close(self) -> None:
        self.closed += 1


async def test_allocate_answers_the_challenge_with_long_term_credentials() -> None:
    conn = ScriptedConnection(challenge, allocated, lambda r: signed(answer(r)))
    async with TurnClient(conn, USERNAME, PASSWORD) as client:
        allocation = await client.allocate()
    assert allocation.relayed == ("127.0.0.1", 50000)
    assert allocation.mapped == ("127.0.0.1", 40000)
    first, second, release = conn.sent
    assert "USERNAME" not in first.attributes and "FINGERPRINT" in first.attributes
    assert second.attributes["USERNAME"] == USERNAME
    assert second.attributes["REALM"] == REALM
    assert second.attributes["NONCE"] == b"n1"
    assert second.check_message_integrity(KEY)
    assert second.attributes["REQUESTED-TRANSPORT"] == 0x11000000
    # Leaving the block deletes the allocation (Refresh, LIFETIME 0) and closes the connection.
    assert release.message_method == stun.Method.REFRESH
    assert release.attributes["LIFETIME"] == 0
    assert conn.closed == 1


async def test_wrong_credentials_are_not_retried() -> None:
    conn = ScriptedConnection(challenge, challenge)
    async with TurnClient(conn, USERNAME, "wrong") as client:
        with pytest.raises(ErrorResponse) as info:
            await client.allocate()
    assert info.value.code == 401
    assert "wrong secret or expired credentials" in str(info.value)
    assert len(conn.sent) == 2  # unsigned, signed; no release since nothing was allocated


async def test_stale_nonce_is_renewed_once() -> None:
    conn = ScriptedConnection(
        challenge,
        lambda r: challenge(r, code=438, nonce=b"n2"),
        allocated,
        lambda r: signed(answer(r)),
    )
    async with TurnClient(conn, USERNAME, PASSWORD) as client:
        await client.allocate()
    assert conn.sent[2].attributes["NONCE"] == b"n2"
    assert conn.sent[2].check_message_integrity(KEY)


async def test_unsigned_success_to_a_signed_request_is_rejected() -> None:
    conn = ScriptedConnection(challenge, lambda r: allocated(r, key=b"not-our-key"))
    async with TurnClient(conn, USERNAME, PASSWORD) as client:
        with pytest.raises(BadResponse, match="not signed"):
            await client.allocate()


async def test_forbidden_peer_is_reported_with_its_code() -> None:
    def forbidden(request: stun.Message) -> stun.Message:
        return stun.parse_message(bytes(answer(request, error=(403, "Forbidden IP"))))

    conn = ScriptedConnection(challenge, allocated, forbidden, lambda r: signed(answer(r)))
    async with TurnClient(conn, USERNAME, PASSWORD) as client:
        await client.allocate()
        with pytest.raises(ErrorResponse) as info:
            await client.create_permission(("127.0.0.1", 9))
    assert info.value.code == 403
    assert conn.sent[2].attributes["XOR-PEER-ADDRESS"] == ("127.0.0.1", 9)


async def test_release_failure_does_not_mask_the_close() -> None:
    conn = ScriptedConnection(challenge, allocated)  # no answer to the release
    async with TurnClient(conn, USERNAME, PASSWORD) as client:
        await client.allocate()
    assert conn.closed == 1


def test_allocation_without_relayed_address_is_bad() -> None:
    response = answer(stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST), {"LIFETIME": 600})
    with pytest.raises(BadResponse, match="XOR-RELAYED-ADDRESS"):
        parse_allocation(response)


def test_long_term_auth_ignores_401_without_realm() -> None:
    auth = LongTermAuth(USERNAME, PASSWORD)
    request = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST)
    bare = answer(request, error=(401, "Unauthorized"))
    assert not auth.should_retry(bare, signed=False)
    assert auth.key is None


class _Server(asyncio.DatagramProtocol):
    """A loopback STUN server that drops the first copy of every request."""

    def __init__(self) -> None:
        self.seen: dict[bytes, int] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = stun.parse_message(data)
        self.seen[request.transaction_id] = self.seen.get(request.transaction_id, 0) + 1
        if self.seen[request.transaction_id] > 1 and self.transport is not None:
            self.transport.sendto(bytes(answer(request, {"XOR-MAPPED-ADDRESS": addr})), addr)


async def test_udp_request_is_retransmitted_until_answered() -> None:
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(_Server, local_addr=("127.0.0.1", 0))
    try:
        conn = await UdpConnection.open(transport.get_extra_info("sockname"))
        try:
            async with asyncio.timeout(20):
                mapped = await binding(conn)
        finally:
            await conn.close()
    finally:
        transport.close()
    assert mapped[0] == "127.0.0.1"
    assert list(server.seen.values()) == [2]
