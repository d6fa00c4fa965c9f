"""One WebSocket connection: the thin I/O shell around the protocol and the session.

Shape (after python-websockets): one reader (the handler coroutine itself), one writer task, one
bounded outbox, one heartbeat task once joined, and one close path. ``close()`` only *requests* a
close and is idempotent; ``run()`` carries it out under a single deadline
(``limits.close_timeout``): flush the outbox if asked, send the close frame, wait for the peer's,
and abort the transport when time is up. Every task the connection starts is cancelled and awaited
before ``run()`` returns.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from signaling.core import protocol
from signaling.core.codes import Close, CloseCode, Err
from signaling.core.config import ServerConfig
from signaling.core.heartbeat import AdaptiveTimeout, HeartbeatPolicy, Liveness, rtt_from_pong
from signaling.core.protocol import ClientMessage, ProtocolError
from signaling.core.ratelimit import TokenBucket
from signaling.runtime.metrics import Metrics
from signaling.runtime.tasks import OwnerKind, adopt

log = logging.getLogger(__name__)


class Handler(Protocol):
    """What the connection reports to (the hub)."""

    async def on_message(self, conn: Connection, message: ClientMessage) -> None: ...
    async def on_error(self, conn: Connection, error: ProtocolError) -> None: ...


class Connection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        config: ServerConfig,
        metrics: Metrics,
        transport: asyncio.BaseTransport | None = None,
        remote: str = "",
    ) -> None:
        self._ws = ws
        #: The TCP transport, aborted when a close handshake misses its deadline.
        self._transport = transport
        self._config = config
        self._limits = config.limits
        self._metrics = metrics
        self.remote = remote
        self._loop = asyncio.get_running_loop()
        self._outbox: deque[str] = deque()
        self._outbox_ready = asyncio.Event()
        self._close_requested = asyncio.Event()
        self._flush_on_close = True
        self._tasks: set[asyncio.Task[Any]] = set()
        self._liveness = Liveness(config.heartbeat.timeout, self._loop.time())
        #: The silence timeout, adapted to the RTT of this link and announced in every ping.
        self._timeout = AdaptiveTimeout(config.heartbeat)
        #: The close code the server chose, or None while open / when the client closed first.
        self.close_code: CloseCode | None = None
        #: The code of the client's close frame, echoed in our answer to it.
        self._peer_close_code: int | None = None
        self.close_reason = ""
        #: Session bound to this connection by the hub once ``join`` succeeded.
        self.session_id: str | None = None
        self.errors = 0
        self.done = asyncio.Event()
        sec = config.security
        self._bucket = TokenBucket(sec.message_rate, sec.message_burst)
        #: Last RTT measured from a pong (seconds), echoed to the client in pings.
        self.last_rtt: float | None = None

    # -- state ------------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self._close_requested.is_set()

    # -- the one place that writes ------------------------------------------------------------

    def send(self, frame: str, *, force: bool = False) -> bool:
        """Queue a frame; never blocks. A full outbox closes the connection with 4009.

        ``force`` bypasses the bound for a resume's welcome and replay, which are bounded by
        the replay buffer instead.
        """
        if self.closing:
            return False
        if not force and len(self._outbox) >= self._limits.send_queue_size:
            self._metrics.send_queue_overflows.inc()
            self.close(Close.TOO_SLOW, "send queue overflow", flush=False)
            return False
        self._outbox.append(frame)
        self._outbox_ready.set()
        return True

    def send_message(self, message: dict[str, Any], *, force: bool = False) -> bool:
        """Send a message that is about the connection, not the session stream (no ``seq``)."""
        self._metrics.message_out(message["type"])
        return self.send(protocol.encode(message), force=force)

    def close(self, code: CloseCode, reason: str = "", *, flush: bool = True) -> None:
        """Request a close; idempotent (the first code wins)."""
        if self.closing:
            return
        self.close_code = code
        self.close_reason = reason or code.name
        self._flush_on_close = flush
        self._metrics.closes.labels(str(code.code)).inc()
        self._close_requested.set()
        self._outbox_ready.set()

    # -- lifecycle ----------------------------------------------------------------------------

    def start_heartbeat(self, policy: HeartbeatPolicy, last_cseq: Callable[[], int]) -> None:
        self._spawn(self._heartbeat(policy, last_cseq), "heartbeat")

    def _spawn(self, coro: Any, name: str) -> None:
        task = self._loop.create_task(coro, name=f"{name}:{self.remote}")
        adopt(task, OwnerKind.CONNECTION, f"connection:{self.remote}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, handler: Handler) -> None:
        """Serve the connection until it closes; returns only once everything it started ended."""
        self._metrics.connections.inc()
        writer = self._loop.create_task(self._write_loop(), name=f"writer:{self.remote}")
        reader = self._loop.create_task(self._read_loop(handler), name=f"reader:{self.remote}")
        for task in (writer, reader):
            adopt(task, OwnerKind.CONNECTION, f"connection:{self.remote}")
        try:
            await self._close_requested.wait()
            await self._close(writer)
        finally:
            for task in (reader, writer, *self._tasks):
                task.cancel()
            await asyncio.gather(reader, writer, *self._tasks, return_exceptions=True)
            self._metrics.connections.dec()
            self.done.set()

    async def _close(self, writer: asyncio.Task[None]) -> None:
        try:
            async with asyncio.timeout(self._limits.close_timeout):
                if self._flush_on_close:
                    await asyncio.shield(writer)
                else:
                    writer.cancel()
                if not self._ws.closed and self.close_code is not None:
                    await self._ws.close(code=self.close_code.code, message=close_reason(self.close_reason))
                elif not self._ws.closed and self._peer_close_code is not None:
                    await self._ws.close(code=_echo(self._peer_close_code))
        except TimeoutError:
            log.info("close handshake with %s timed out; aborting", self.remote)
            self._abort()
        except (ConnectionError, RuntimeError) as exc:
            log.debug("close of %s failed: %r", self.remote, exc)
            self._abort()

    def _abort(self) -> None:
        if isinstance(self._transport, asyncio.Transport):
            self._transport.abort()

    async def _write_loop(self) -> None:
        """Write queued frames in order; stop once a close is requested and the outbox is empty."""
        ws = self._ws
        while True:
            if not self._outbox:
                if self.closing:
                    return
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            frame = self._outbox.popleft()
            try:
                if not frame.isascii():  # C speed; only non-ASCII frames can fail to encode
                    frame.encode("utf-8")
            except UnicodeEncodeError as exc:
                # Cannot happen for frames made by protocol.encode (strict); if a bug lets one
                # through, it costs this connection (1011, resume), never the writer silently.
                log.error("unencodable frame for %s (%s): closing 1011", self.remote, exc)
                self._outbox.clear()
                self.close(Close.INTERNAL, "unencodable frame", flush=False)
                return
            try:
                await ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                # The transport is gone; the reader will see it too. Nothing left to flush.
                self._outbox.clear()
                self.close(Close.INTERNAL, "write failed", flush=False)
                return
            except Exception:
                log.exception("writing to %s failed: closing 1011", self.remote)
                self._outbox.clear()
                self.close(Close.INTERNAL, "write failed", flush=False)
                return

    async def _read_loop(self, handler: Handler) -> None:
        ws = self._ws
        limits = self._limits
        join_deadline = self._loop.time() + limits.join_timeout
        try:
            while not self.closing:
                timeout = None if self.session_id else max(0.0, join_deadline - self._loop.time())
                try:
                    msg = await ws.receive(timeout=timeout)
                except TimeoutError:
                    await handler.on_error(self, ProtocolError(Err.JOIN_TIMEOUT, "no join within the join timeout"))
                    self.close(Close.PROTOCOL_VIOLATION, "join timeout")
                    return
                now = self._loop.time()
                self._liveness.seen(now)
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY) and not self._bucket.take(now):
                    await self._rate_limited(handler)
                    return
                if msg.type is WSMsgType.TEXT:
                    await self._dispatch(handler, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await self._handle_error(handler, ProtocolError(Err.BINARY_FRAME, "binary frames are not supported"))
                elif msg.type is WSMsgType.ERROR:
                    # aiohttp already answered an unreadable frame (e.g. 1009 for oversize).
                    log.info("websocket error from %s: %r", self.remote, ws.exception())
                    return
                else:  # CLOSE, CLOSING, CLOSED: the peer is gone or going.
                    if msg.type is WSMsgType.CLOSE:
                        self._peer_close_code = msg.data if isinstance(msg.data, int) else None
                    return
        except Exception:
            # A bug of ours (a handler raised): this connection fails with 1011 and the client
            # resumes with backoff; logged once, with its traceback. Never 1000: that says "done".
            log.exception("handling a frame from %s failed: closing 1011", self.remote)
            self.close(Close.INTERNAL, "internal error", flush=True)
        finally:
            # Reader done: the connection cannot continue. If nobody chose a code, the client
            # closed (or vanished) and there is nothing to send.
            if not self.closing:
                self._close_requested.set()
                self._outbox_ready.set()

    async def _dispatch(self, handler: Handler, frame: str) -> None:
        try:
            message = protocol.parse(
                frame, max_bytes=self._limits.max_message_bytes, max_signal_bytes=self._limits.max_signal_bytes,
                max_data_bytes=self._limits.max_data_bytes,
            )
        except ProtocolError as error:
            await self._handle_error(handler, error)
            return
        self._metrics.message_in(type(message).__name__.lower())
        # Our own processing must not make the client look silent.
        self._liveness.stall()
        try:
            await handler.on_message(self, message)
        finally:
            self._liveness.unstall(self._loop.time())

    async def _rate_limited(self, handler: Handler) -> None:
        """Too many frames: close 4008. The frame is not processed and not confirmed, so a
        client that resumes after the announced delay resends it: nothing is lost."""
        retry_ms = round(self._config.security.rate_limit_retry_after * 1000 + self._bucket.wait_time() * 1000)
        await handler.on_error(
            self, ProtocolError(Err.RATE_LIMITED, "message rate exceeded", retry_after_ms=retry_ms)
        )
        self.close(Close.RATE_LIMITED, "rate limited")

    async def _handle_error(self, handler: Handler, error: ProtocolError) -> None:
        self.errors += 1
        await handler.on_error(self, error)
        if self.errors >= self._limits.max_errors and not self.closing:
            await handler.on_error(self, ProtocolError(Err.TOO_MANY_ERRORS, f"{self.errors} errors on this connection"))
            self.close(Close.PROTOCOL_VIOLATION, "too many errors")

    async def _heartbeat(self, policy: HeartbeatPolicy, last_cseq: Callable[[], int]) -> None:
        loop = self._loop
        # A probe at once: the first RTT sample (and so an adapted timeout) arrives one RTT after
        # the join instead of up to an interval later. The schedule proper starts at a random
        # point of the first interval, as before.
        next_ping = loop.time()
        probe = True
        while not self.closing:
            deadline = self._liveness.deadline()
            wake = min(next_ping, deadline if deadline is not None else math.inf)
            await asyncio.sleep(max(0.0, wake - loop.time()))
            now = loop.time()
            if self._liveness.is_dead(now):
                self._metrics.heartbeat_timeouts.inc()
                log.info("no frame from %s for %.1fs: closing 4013", self.remote, now - self._liveness.last_seen)
                self.close(Close.HEARTBEAT_TIMEOUT, "heartbeat timeout", flush=False)
                return
            if now >= next_ping:
                rtt_ms = round(self.last_rtt * 1000, 2) if self.last_rtt is not None else None
                # The probe follows a resume's welcome and replay, which may fill the outbox past
                # its bound (they are bounded by the replay buffer): it is forced like them.
                self.send_message(protocol.ping(round(now * 1000, 3), last_cseq(), rtt_ms, self.timeout_ms), force=probe)
                next_ping = now + (policy.first_delay() if probe else policy.next_delay())
                probe = False

    @property
    def timeout_ms(self) -> int:
        """The silence timeout of this connection as announced to the client (ms)."""
        return round(self._timeout.timeout * 1000)

    def confirm(self, last_cseq: int) -> None:
        """Confirm client messages now with an extra ping (which also yields an RTT sample)."""
        self.send_message(protocol.ping(round(self._loop.time() * 1000, 3), last_cseq, timeout_ms=self.timeout_ms))

    def rtt(self, t_ms: float) -> float | None:
        """RTT proven by a pong echoing ``t_ms``; a valid sample also adapts the silence timeout."""
        rtt = rtt_from_pong(t_ms, self._loop.time() * 1000, self._timeout.bound * 1000)
        if rtt is not None:
            self._liveness.timeout = self._timeout.observe(rtt)
        return rtt


def close_reason(reason: str, limit: int = 120) -> bytes:
    """A close frame's reason: valid UTF-8 of at most ``limit`` bytes (RFC 6455 section 5.5.1
    allows 123), cut on a character boundary; unencodable characters are replaced."""
    data = reason.encode("utf-8", "replace")[:limit]
    return data.decode("utf-8", "ignore").encode("utf-8")

def _echo(code: int) -> int:
    """The code to answer a client's close frame with: its own when we may send it (RFC 6455
    section 7.4: 1000-1003, 1007-1011, 3000-4999), else 1000."""
    if 1000 <= code <= 1003 or 1007 <= code <= 1011 or 3000 <= code <= 4999:
        return code
    return 1000
