"""Accept-time guards of a listener: connections per address and the request-head deadline.

aiohttp checks nothing before a request is complete, and the ``/ws`` handler's per-address limit
runs only after the headers are in: a client that opens sockets and never finishes a request
holds a file descriptor each, for as long as it likes. Here every TCP connection is counted per
address the moment it is accepted (before a byte is parsed): past ``max_per_address`` it gets a
bare ``429`` and is closed at once, and a connection that has not sent a complete request head
within ``head_timeout`` is aborted. Later requests on a kept-alive connection are bounded by
aiohttp's ``keepalive_timeout`` (set from the same config by :func:`runner_options`).

The guard wraps aiohttp's protocol (it forwards every ``asyncio.Protocol`` callback), so nothing
of aiohttp's internals is touched. :class:`AcceptThrottle` keeps the event loop's "out of system
resource" reports (EMFILE at ``accept()``; asyncio already pauses accepting for a second) to one
warning line per interval, with a count.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

#: Sent to a connection refused at accept time; it has sent no request yet, so HTTP/1.1 is a guess
#: that fits every client of this server (browsers, SDKs, curl).
REFUSAL = (
    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 29\r\nConnection: close\r\n\r\ntoo many connections from you"
)
_HEAD_END = b"\r\n\r\n"


@dataclass(slots=True)
class AddressCounter:
    """Open connections per client address, bounded. No I/O.

    At accept time only the TCP peer is known: behind a reverse proxy every client shares the
    proxy's address. Addresses for which ``is_proxy`` holds (``security.trusted_proxies``) are
    bounded by ``max_per_proxy`` instead; their clients are told apart later, in ``/ws``.
    """

    max_per_address: int
    max_per_proxy: int = 0
    is_proxy: Callable[[str], bool] | None = None
    _open: dict[str, int] = field(default_factory=dict)
    #: Connections refused since start (for metrics and the tests).
    refused: int = 0

    def limit(self, address: str) -> int:
        if self.is_proxy is not None and self.is_proxy(address):
            return self.max_per_proxy
        return self.max_per_address

    def open(self, address: str) -> bool:
        count = self._open.get(address, 0)
        if count >= self.limit(address):
            self.refused += 1
            return False
        self._open[address] = count + 1
        return True

    def close(self, address: str) -> None:
        count = self._open.get(address, 0) - 1
        if count > 0:
            self._open[address] = count
        else:
            self._open.pop(address, None)

    def count(self, address: str) -> int:
        return self._open.get(address, 0)

    @property
    def total(self) -> int:
        return sum(self._open.values())


class GuardedProtocol(asyncio.Protocol):
    """Counts its connection, refuses it past the limit, aborts it if the head is late."""

    def __init__(
        self, inner: asyncio.Protocol, counter: AddressCounter, head_timeout: float,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self._inner = inner
        self._counter = counter
        self._head_timeout = head_timeout
        self._on_refused = on_refused
        self._address: str | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        #: The last bytes seen while waiting for the end of the first request head.
        self._tail = b""
        self._head_done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._counter.open(address):
            if self._on_refused is not None:
                self._on_refused(address)
            transport.write(REFUSAL)
            transport.close()
            return
        self._address = address
        self._transport = transport
        self._deadline = asyncio.get_running_loop().call_later(self._head_timeout, self._head_late)
        self._inner.connection_made(transport)

    def _head_late(self) -> None:
        self._deadline = None
        if not self._head_done and self._transport is not None:
            log.debug("no complete request head from %s within %.1fs: aborting", self._address, self._head_timeout)
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._address is None:
            return  # refused: whatever it sends is ignored until the close completes
        if not self._head_done:
            seen = self._tail + data
            if _HEAD_END in seen:
                self._head_done = True
                self._tail = b""
                if self._deadline is not None:
                    self._deadline.cancel()
                    self._deadline = None
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._address is None:
            return None
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is None:
            return
        self._counter.close(self._address)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._transport = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._address is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._address is not None:
            self._inner.resume_writing()


def guarded_factory(
    factory: Callable[[], Any], counter: AddressCounter, head_timeout: float,
    on_refused: Callable[[str], None] | None = None,
) -> Callable[[], asyncio.Protocol]:
    """A protocol factory for ``loop.create_server`` wrapping aiohttp's (``runner.server``)."""

    def make() -> asyncio.Protocol:
        return GuardedProtocol(factory(), counter, head_timeout, on_refused)

    return make


class AcceptThrottle:
    """An event-loop exception handler that reports accept() resource exhaustion (EMFILE, ENFILE,
    ENOBUFS, ENOMEM) at most once per ``interval`` seconds, as one warning line with the number of
    occurrences; everything else goes to the previous handler (or the default one)."""

    MESSAGE = "socket.accept() out of system resource"

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = 10.0) -> None:
        self._loop = loop
        self._interval = interval
        self._previous = loop.get_exception_handler()
        self._last = -float("inf")
        self._suppressed = 0

    def install(self) -> None:
        self._loop.set_exception_handler(self)

    def uninstall(self) -> None:
        self._loop.set_exception_handler(self._previous)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == self.MESSAGE:
            now = loop.time()
            if now - self._last < self._interval:
                self._suppressed += 1
                return
            self._last = now
            exc = context.get("exception")
            log.warning("accept() failed: %s (%d more since the last report); accepting pauses 1 s each time. "
                        "Raise the open-files limit (ulimit -n) or lower security.max_connections_per_ip",
                        exc, self._suppressed)
            self._suppressed = 0
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)


class GuardedSite(web.BaseSite):
    """A TCP listener of an aiohttp runner whose connections pass a :class:`GuardedProtocol`."""

    __slots__ = ("_counter", "_head_timeout", "_host", "_on_refused", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str | None, port: int, *, counter: AddressCounter, head_timeout: float,
        ssl_context: ssl.SSLContext | None = None, on_refused: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._counter = counter
        self._head_timeout = head_timeout
        self._on_refused = on_refused

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        factory = guarded_factory(server, self._counter, self._head_timeout, self._on_refused)
        self._server = await asyncio.get_running_loop().create_server(
            factory, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
        )
