"""I/O shell of the STUN/TURN client: one connection to one server, one request at a time.

The decisions live in :mod:`signaling.turn.protocol`; this module only moves bytes. No
background task is started: a request is sent, retransmitted (UDP, RFC 8489 §6.2.1) and awaited
inside the caller's own ``await``, so nothing outlives a ``TurnClient``'s ``async with``.
Deadlines belong to the caller (``async with asyncio.timeout(...)``): a request gives up on its
own only after the RFC's retransmission schedule, ~40 s.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from types import TracebackType
from typing import Protocol, Self

from aioice import stun

from signaling.turn.protocol import (
    Allocation,
    BadResponse,
    LongTermAuth,
    NoResponse,
    StunClientError,
    allocate_request,
    binding_request,
    create_permission_request,
    error_of,
    mapped_address,
    parse_allocation,
    refresh_request,
)
from signaling.turn.uris import IceUri

#: Initial retransmission timeout over UDP (RFC 8489 §6.2.1), doubled after each try.
RTO = 0.5
#: Requests sent over UDP before giving up (Rc), and the wait after the last one, in RTOs (Rm).
RC = 7
RM = 16
#: Seconds a close may take before the transport is aborted.
CLOSE_TIMEOUT = 1.0
#: A STUN header is 20 bytes; its length field counts the attributes that follow.
_HEADER = 20
#: Largest STUN message we accept over a stream (a response is a few hundred bytes).
_MAX_MESSAGE = 64 * 1024


class StunConnection(Protocol):
    """A connection to a STUN/TURN server that runs one transaction at a time."""

    async def request(self, message: stun.Message) -> stun.Message:
        """Send ``message`` and return the response (success or error) with its transaction id."""
        ...

    async def close(self) -> None:
        """Release the socket; idempotent, bounded by :data:`CLOSE_TIMEOUT`."""
        ...


class _UdpProtocol(asyncio.DatagramProtocol):
    """Routes datagrams to the pending transaction with the same id."""

    def __init__(self) -> None:
        self.pending: dict[bytes, asyncio.Future[stun.Message]] = {}

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        try:
            message = stun.parse_message(data)
        except ValueError:
            return  # not STUN, or a corrupted message: ignore it like a lost datagram
        future = self.pending.get(message.transaction_id)
        if future is not None and not future.done():
            future.set_result(message)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable on a connected socket: nothing listens there. Fail fast.
        for future in self.pending.values():
            if not future.done():
                future.set_exception(exc)


class UdpConnection:
    """STUN over UDP with retransmissions."""

    def __init__(self, transport: asyncio.DatagramTransport, protocol: _UdpProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    @classmethod
    async def open(cls, address: tuple[str, int]) -> Self:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(_UdpProtocol, remote_addr=address)
        return cls(transport, protocol)

    async def request(self, message: stun.Message) -> stun.Message:
        future: asyncio.Future[stun.Message] = asyncio.get_running_loop().create_future()
        self._protocol.pending[message.transaction_id] = future
        data = bytes(message)
        rto = RTO
        try:
            for attempt in range(1, RC + 1):
                self._transport.sendto(data)
                wait = rto if attempt < RC else RM * RTO
                done, _ = await asyncio.wait({future}, timeout=wait)
                if done:
                    return future.result()
                rto *= 2
        finally:
            del self._protocol.pending[message.transaction_id]
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # mark an ICMP error as seen even if we were cancelled
        raise NoResponse(f"no answer over UDP after {RC} tries")

    async def close(self) -> None:
        self._transport.close()


class StreamConnection:
    """STUN over TCP or TLS: messages framed by their own length (RFC 8489 §6.2.2)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(
        cls, address: tuple[str, int], ssl_context: ssl.SSLContext | None = None
    ) -> Self:
        reader, writer = await asyncio.open_connection(
            address[0],
            address[1],
            ssl=ssl_context,
            server_hostname=address[0] if ssl_context is not None else None,
        )
        return cls(reader, writer)

    async def request(self, message: stun.Message) -> stun.Message:
        self._writer.write(bytes(message))
        try:
            await self._writer.drain()
            while True:
                response = await self._read_message()
                if response is not None and response.transaction_id == message.transaction_id:
                    return response
        except asyncio.IncompleteReadError:
            raise NoResponse("the server closed the connection") from None

    async def _read_message(self) -> stun.Message | None:
        header = await self._reader.readexactly(4)
        kind, length = struct.unpack("!HH", header)
        if kind & 0xC000:
            # ChannelData (RFC 8656 §12.4), padded to 4 bytes over streams: skip it.
            await self._reader.readexactly(length + (-length % 4))
            return None
        if length > _MAX_MESSAGE:
            raise BadResponse(f"STUN message of {length} bytes")
        rest = await self._reader.readexactly(_HEADER - 4 + length)
        try:
            return stun.parse_message(header + rest)
        except ValueError as exc:
            raise BadResponse(f"unparsable STUN message: {exc}") from None

    async def close(self) -> None:
        if self._writer.is_closing():
            return
        self._writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._writer.wait_closed()
        except TimeoutError:
            self._writer.transport.abort()
        except OSError:
            pass  # the peer reset the connection first: it is closed either way


async def open_connection(uri: IceUri, ssl_context: ssl.SSLContext | None = None) -> StunConnection:
    """Connect to the server of ``uri`` over its transport (UDP, TCP, or TLS for ``s`` schemes).

    ``ssl_context`` is used for ``stuns:``/``turns:`` only; default: the system's trust store.
    """
    if uri.transport == "udp":
        return await UdpConnection.open(uri.address)
    if not uri.secure:
        return await StreamConnection.open(uri.address)
    return await StreamConnection.open(uri.address, ssl_context or ssl.create_default_context())


async def binding(conn: StunConnection) -> tuple[str, int]:
    """Run a Binding transaction and return our reflexive address."""
    request = binding_request()
    request.add_fingerprint()
    response = await conn.request(request)
    if response.message_class != stun.Class.RESPONSE:
        raise error_of(response)
    return mapped_address(response)


class TurnClient:
    """A TURN client that allocates, asks for permissions and releases, with long-term auth."""

    #: Requests sent for one transaction at most: unsigned, signed, signed again after 438.
    MAX_ATTEMPTS = 3

    def __init__(self, conn: StunConnection, username: str, password: str) -> None:
        self._conn = conn
        self._auth = LongTermAuth(username, password)
        self.allocation: Allocation | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def allocate(self) -> Allocation:
        """Allocate a UDP relay (RFC 8656 §7)."""
        response = await self._transact(allocate_request)
        self.allocation = parse_allocation(response)
        return self.allocation

    async def create_permission(self, peer: tuple[str, int]) -> None:
        """Ask the server to let ``peer``'s IP talk to our relay (RFC 8656 §9)."""
        await self._transact(lambda: create_permission_request(peer))

    async def release(self) -> None:
        """Delete the allocation (Refresh with LIFETIME 0), so checks leave nothing behind."""
        if self.allocation is not None:
            self.allocation = None
            await self._transact(lambda: refresh_request(0))

    async def close(self) -> None:
        """Release the allocation if any (best effort, bounded), then close the connection."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.release()
        except (StunClientError, OSError):
            pass  # it expires by itself within its lifetime (RFC 8656 §8); TimeoutError included
        finally:
            await self._conn.close()

    async def _transact(self, build: _RequestFactory) -> stun.Message:
        for _ in range(self.MAX_ATTEMPTS):
            signed = self._auth.key is not None
            request = self._auth.prepare(build())
            response = await self._conn.request(request)
            if response.message_class == stun.Class.RESPONSE:
                if signed and not self._auth.authentic(response):
                    raise BadResponse("success response not signed with our credentials")
                return response
            if not self._auth.should_retry(response, signed=signed):
                raise error_of(response)
        raise BadResponse(f"server still challenging after {self.MAX_ATTEMPTS} attempts")


class _RequestFactory(Protocol):
    def __call__(self) -> stun.Message: ...
