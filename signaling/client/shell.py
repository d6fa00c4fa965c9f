"""The Python SDK's aiohttp shell around the pure :class:`~signaling.client.core.ClientSession`.

    async with Client("ws://127.0.0.1:8080/ws", room="demo", name="bot") as client:
        await client.signal(peer_id, {"sdp": ...})
        async for event in client:
            ...

The client follows the reconnect contract of the design: on a dropped connection it resumes
(``join`` with ``resume``), the server replays what was missed and the client resends what the
server had not confirmed; if the server refuses the resume (4011) it rejoins as a new session;
fatal close codes (4001, 4003, 4006, 4010, 4012) end it for good. Reconnect attempts back off
exponentially with full jitter (first retry immediate). A server that stays silent past the
heartbeat timeout it announced counts as dead.

The socket reader never waits for the application: events go into a bounded buffer, and a
stream message that finds it full is *held* (not acknowledged; the server keeps it for replay).
Once the application has read half of the buffer the client resumes at once, and the server
replays what was held. Pings are answered all along, so a slow application never looks like a
dead link, and nothing the client acknowledged is ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from signaling.client.core import ClientSession, Inbound, Welcome
from signaling.core import protocol
from signaling.core.backoff import Backoff
from signaling.core.codes import ClientAction, Close
from signaling.core.errors import PeerError
from signaling.runtime.aio import cancel_and_wait

log = logging.getLogger(__name__)

#: Called once per connection attempt for the access token to present (sync or async).
TokenProvider = Callable[[], Awaitable[str | None] | str | None]


class ClientState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Joined:
    """The first join succeeded."""

    peer: str
    session: str
    peers: dict[str, str]
    welcome: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PeerJoined:
    peer: str
    name: str


@dataclass(frozen=True, slots=True)
class PeerLeft:
    peer: str
    reason: str


@dataclass(frozen=True, slots=True)
class PeerReconnecting:
    peer: str


@dataclass(frozen=True, slots=True)
class PeerResumed:
    peer: str


@dataclass(frozen=True, slots=True)
class SignalReceived:
    sender: str
    data: Any
    seq: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """An application message (``data``) from another peer of the room."""

    sender: str
    topic: str
    payload: Any
    seq: int
    #: The recipients the sender named, or None when it went to the whole room.
    to: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    code: str
    message: str
    cseq: int | None
    #: ``media-failed`` only: ``"publisher"`` or ``"subscriber"``.
    target: str | None = None


@dataclass(frozen=True, slots=True)
class ServerMessage:
    """Any other session message (SFU messages: publish-answer, subscriber-offer, track-*)."""

    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reconnecting:
    attempt: int
    delay: float
    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Resumed:
    """The session survived a reconnect: peer connections are untouched."""

    replayed: int
    resent: int


@dataclass(frozen=True, slots=True)
class Rejoined:
    """The old session was gone: this is a new one (new peer id); redo media and p2p state."""

    peer: str
    session: str
    peers: dict[str, str]
    dropped: int


@dataclass(frozen=True, slots=True)
class Closed:
    code: int | None
    reason: str


Event = (
    Joined | PeerJoined | PeerLeft | PeerReconnecting | PeerResumed | SignalReceived | DataReceived | ErrorReceived
    | ServerMessage | Reconnecting | Resumed | Rejoined | Closed
)


class ClientError(PeerError):
    """The client cannot go on (fatal close code, or closed)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class _Outcome:
    """How one connection ended."""

    code: int | None
    reason: str
    retry_after: float | None = None
    reconnect_mode: str | None = None
    reconnect_delay: float | None = None
    #: The server welcomed this connection (else it failed on the way there).
    welcomed: bool = False


#: Lifecycle events (Reconnecting, Resumed, Closed, …) the buffer takes beyond ``max_events``:
#: they are never replayable, so they must never be refused for lack of room.
LIFECYCLE_SLACK = 64


class _Events:
    """The application's event buffer: at most ``limit`` stream events (a stream message that
    finds no room is held, see :class:`~signaling.client.core.ClientSession`), plus up to
    :data:`LIFECYCLE_SLACK` unreplayable ones (lifecycle events, unstamped errors). When that is
    full too, the oldest ``Reconnecting`` goes (superseded by later ones); an acknowledged
    stream event is never evicted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[Event] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def room(self) -> bool:
        return len(self._items) < self.limit

    @property
    def caught_up(self) -> bool:
        """The application read enough of a full buffer for a resume to be worth it."""
        return len(self._items) <= self.limit // 2

    def put(self, event: Event) -> None:
        """A stream event, after :meth:`room` said yes."""
        self._items.append(event)
        self._ready.set()

    def put_unreplayable(self, event: Event) -> None:
        if len(self._items) >= self.limit + LIFECYCLE_SLACK:
            old = next((e for e in self._items if isinstance(e, Reconnecting)), None)
            if old is not None:
                self._items.remove(old)
            elif not isinstance(event, Closed):
                log.warning("event buffer full: dropping %s", type(event).__name__)
                return
        self._items.append(event)
        self._ready.set()

    async def get(self) -> Event:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class Client:
    def __init__(
        self,
        url: str | Sequence[str],
        room: str,
        *,
        name: str = "",
        token: str | TokenProvider | None = None,
        token_provider: TokenProvider | None = None,
        subscribe: bool = True,
        codecs: Sequence[str] | None = None,
        backoff: Backoff | None = None,
        connect_timeout: float = 10.0,
        ack_every: int = 16,
        ack_delay: float = 0.05,
        max_events: int = 4096,
        max_unconfirmed: int = 1024,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        #: Every node the client may use (a cluster without a load balancer in front): it moves to
        #: the next one when a connection fails before its welcome or the node goes away (1001).
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("at least one URL")
        self._url_index = 0
        self.room = room
        self.name = name
        self.subscribe = subscribe
        #: Codec names this client can receive, announced at join (``None``: not announced).
        self.codecs = list(codecs) if codecs is not None else None
        #: ``token_provider`` wins: it is asked on every attempt (join, resume, rejoin).
        self._token = token_provider if token_provider is not None else token
        self._backoff = backoff or Backoff()
        self._connect_timeout = connect_timeout
        self._ack_delay = ack_delay
        self._core = ClientSession(ack_every=ack_every, ack_delay=ack_delay, max_unconfirmed=max_unconfirmed)
        self._http = session
        self._own_http = session is None
        self._events = _Events(max_events)
        self.state = ClientState.CONNECTING
        self.peers: dict[str, str] = {}
        self._room_for_more = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._send_lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._first_welcome: asyncio.Future[None] | None = None
        self._closing = False
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.resumes = 0
        self.rejoins = 0
        #: Signaling RTT the server measured from our pongs (ms), from the latest ping.
        self.rtt_ms: float | None = None

    @property
    def peer_id(self) -> str | None:
        return self._core.peer_id

    @property
    def session_id(self) -> str | None:
        return self._core.session_id

    @property
    def last_seq(self) -> int:
        """Highest server ``seq`` received (what a resume asks to continue after)."""
        return self._core.last_seq

    @property
    def held(self) -> int:
        """Stream messages held because the application was not reading (replayed later)."""
        return self._core.held

    # -- public API -----------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, Closed):
                return

    async def next_event(self) -> Event:
        """The next event (wrap in ``asyncio.timeout`` to bound the wait)."""
        return await self._events.get()

    async def connect(self) -> None:
        """Connect and join; returns once joined. Raises :class:`ClientError` if that cannot happen."""
        if self._supervisor is not None:
            raise ClientError("connect() called twice")
        if self._http is None:
            self._http = aiohttp.ClientSession()
        loop = asyncio.get_running_loop()
        self._first_welcome = loop.create_future()
        self._supervisor = loop.create_task(self._supervise(), name=f"client:{self.room}")
        try:
            await self._first_welcome
        except BaseException:
            await self.close()
            raise

    async def signal(self, to: str, data: Any) -> int:
        """Send ``data`` to peer ``to``; queued while reconnecting and resent after a resume."""
        return await self.send({"type": "signal", "to": to, "data": data})

    async def send_data(self, topic: str, payload: Any, *, to: Sequence[str] | None = None) -> int:
        """Send an application message to every other peer of the room, or to ``to`` only.

        Like ``signal`` it rides the session: ordered, resent after a resume, delivered exactly
        once. Returns its cseq (an ``error`` naming it may follow: ``rate-limited`` with
        ``retry_after_ms``, ``too-large``, ``unknown-peer``, ``forbidden``).
        """
        message: dict[str, Any] = {"type": "data", "topic": topic, "payload": payload}
        if to is not None:
            message["to"] = list(to)
        return await self.send(message)

    async def set_track_state(self, track: str, muted: bool) -> int:
        """Tell the room that we muted (unmuted) one of our published tracks ourselves."""
        return await self.send({"type": "track-state", "track": track, "muted": muted})

    async def set_subscription(self, track: str, quality: str) -> int:
        """Ask for a quality (``low``/``medium``/``high``/``off``) of another peer's video track.

        Simulcast tracks switch layer (``track-layer`` tells which one arrives); others are
        unaffected.
        """
        return await self.send({"type": "set-subscription", "track": track, "quality": quality})

    async def send(self, message: dict[str, Any]) -> int:
        """Send a state-changing message (it gets the next ``cseq``); returns that cseq."""
        self._check_open()
        while not self._core.window_open:
            # Wait for the server to confirm (it does every 32 messages and on every ping).
            self._check_open()
            self._room_for_more.clear()
            await self._room_for_more.wait()
        message = self._core.stamp(message)
        if self.state is ClientState.CONNECTED:
            await self._write(message)
        return int(message["cseq"])

    def _check_open(self) -> None:
        if self.state is ClientState.CLOSED:
            raise ClientError("client is closed", self.close_code)

    async def leave(self, *, linger: float = 0.0) -> None:
        """End the session on the server (others see ``peer-left``), then close.

        ``linger`` (seconds, at most 10): the session stays resumable that long and ends as
        "left" only if nobody resumes it (``leave {linger_ms}``).

        The reader owns the socket, so this sends ``leave`` and waits for the reader to see
        the server's close (1000); it does not read the socket itself.
        """
        if self.state is ClientState.CONNECTED:
            message: dict[str, Any] = {"type": "leave"}
            if linger > 0:
                message["linger_ms"] = min(10_000, round(linger * 1000))
            await self._write(message)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._connect_timeout):
                    await self.closed.wait()
        await self.close()

    async def close(self) -> None:
        """Close now; idempotent."""
        if self._closing:
            await self.closed.wait()
            return
        self._closing = True
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not asyncio.current_task():
            await cancel_and_wait(supervisor)
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
                async with asyncio.timeout(2.0):
                    await ws.close()
        if self._own_http and self._http is not None:
            await self._http.close()
        if self.state is not ClientState.CLOSED:
            self._finish(Close.NORMAL.code, "closed by client")

    # -- the supervisor: connect, run, decide ---------------------------------------------------

    def _finish(self, code: int | None, reason: str) -> None:
        self.state = ClientState.CLOSED
        self.close_code = code
        self._put_nowait(Closed(code, reason))
        if self._first_welcome is not None and not self._first_welcome.done():
            self._first_welcome.set_exception(ClientError(f"could not join: {reason}", code))
        self.closed.set()
        self._room_for_more.set()

    def _put_nowait(self, event: Event) -> None:
        # Lifecycle events never block the supervisor and never evict a stream event.
        self._events.put_unreplayable(event)

    @property
    def url(self) -> str:
        """The node this client connects to now."""
        return self.urls[self._url_index]

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                outcome = await self._connection()
                self._backoff.disconnected(loop.time())
                self._ws = None
                if not outcome.welcomed or outcome.code == Close.GOING_AWAY.code:
                    self._url_index = (self._url_index + 1) % len(self.urls)
                action = self._core.closed(outcome.code, reconnect_mode=outcome.reconnect_mode)
                if action in (ClientAction.DONE, ClientAction.FATAL):
                    self._finish(outcome.code, outcome.reason)
                    return
                delay = self._backoff.next_delay()
                if outcome.reconnect_delay is not None:
                    delay = outcome.reconnect_delay
                elif action is ClientAction.RESUME_AFTER_DELAY and outcome.retry_after is not None:
                    delay = max(delay, outcome.retry_after)
                self.state = ClientState.RECONNECTING
                self._put_nowait(Reconnecting(self._backoff.attempt, delay, outcome.code, outcome.reason))
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            if self.state is not ClientState.CLOSED:
                self._finish(Close.NORMAL.code, "closed by client")
            raise

    async def _token_value(self) -> str | None:
        token = self._token
        if token is None or isinstance(token, str):
            return token
        value = token()
        if inspect.isawaitable(value):
            value = await value
        if value is not None and not isinstance(value, str):
            raise ClientError(f"token provider returned {type(value).__name__}, not str")
        return value

    async def _connection(self) -> _Outcome:
        """One connection from connect to close; never raises for network trouble.

        Whatever happens, the socket it opened is closed before it returns.
        """
        assert self._http is not None
        loop = asyncio.get_running_loop()
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                ws = await self._http.ws_connect(self.url, autoping=True, heartbeat=None)
                self._ws = ws
                welcome_or_outcome = await self._join(ws)
            if isinstance(welcome_or_outcome, _Outcome):
                return welcome_or_outcome
            self._backoff.connected(loop.time())
            outcome = await self._read(ws, welcome_or_outcome)
            outcome.welcomed = True
            return outcome
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, ClientError) as exc:
            # ValueError: a frame that is not JSON; ClientError: a frame that is not an object.
            return _Outcome(ws.close_code if ws is not None else None, f"connection failed: {exc!r}")
        finally:
            if ws is not None and not ws.closed:
                await _abort(ws)

    async def _join(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any] | _Outcome:
        join: dict[str, Any] = {"type": "join", "room": self.room, "subscribe": self.subscribe}
        if self.codecs is not None:
            join["codecs"] = self.codecs
        if self.name:
            join["name"] = self.name
        token = await self._token_value()
        if token:
            join["token"] = token
        resume = self._core.join_resume()
        resuming = resume is not None
        if resume is not None:
            join["resume"] = resume
        await ws.send_str(protocol.encode(join))
        outcome = _Outcome(None, "closed before welcome")
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return self._closed_outcome(ws, outcome)
            message = protocol_json(msg.data)
            if message.get("type") == "error":
                outcome.reason = f"{message.get('code')}: {message.get('message')}"
                if "retry_after_ms" in message:
                    outcome.retry_after = message["retry_after_ms"] / 1000
                continue
            if message.get("type") == "welcome":
                await self._on_welcome(message, resuming)
                return message

    def _closed_outcome(self, ws: aiohttp.ClientWebSocketResponse, outcome: _Outcome) -> _Outcome:
        """The socket closed; an error message seen before the close explains it best."""
        outcome.code = ws.close_code
        if outcome.reason in ("closed before welcome", "connection lost") and ws.close_code is not None:
            outcome.reason = f"closed with {ws.close_code}"
        return outcome

    async def _on_welcome(self, welcome: dict[str, Any], resuming: bool) -> None:
        peers = {p["id"]: p["name"] for p in welcome.get("peers", [])}
        self.peers = peers
        kind, dropped = self._core.welcomed(welcome, resuming=resuming)
        self._confirmed()
        if kind is Welcome.RESUMED:
            self.resumes += 1
            # Resend in cseq order. send() does not write until the state is CONNECTED, and
            # what it stamps meanwhile is picked up here, so nothing overtakes a resend.
            resent = 0
            while (message := self._core.unconfirmed(resent)) is not None:
                await self._write(message)
                resent += 1
            self.state = ClientState.CONNECTED
            self._put_nowait(Resumed(replayed=welcome.get("replayed", 0), resent=resent))
            return
        # A fresh session: seq and cseq start over.
        self.state = ClientState.CONNECTED
        if kind is Welcome.JOINED:
            self._put_nowait(Joined(welcome["peer"], welcome["session"], peers, welcome))
            if self._first_welcome is not None and not self._first_welcome.done():
                self._first_welcome.set_result(None)
        else:
            self.rejoins += 1
            self._put_nowait(Rejoined(welcome["peer"], welcome["session"], peers, dropped))

    def _confirmed(self) -> None:
        if self._core.window_open:
            self._room_for_more.set()

    async def _write(self, message: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            return
        async with self._send_lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(protocol.encode(message))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, welcome: dict[str, Any]) -> _Outcome:
        """Read until the connection ends. Never waits for the application (see the module doc)."""
        loop = asyncio.get_running_loop()
        core = self._core
        dead_after = welcome["heartbeat"]["timeout_ms"] / 1000
        outcome = _Outcome(None, "connection lost")
        last_heard = loop.time()
        while True:
            if core.lagging and self._events.caught_up:
                # The application read what it had: resume now, the server replays what was held.
                await _abort(ws)
                return _Outcome(None, "caught up: resuming for the held messages", reconnect_delay=0.0)
            now = loop.time()
            wake = last_heard + dead_after
            ack_deadline = core.ack_deadline
            if ack_deadline is not None:
                wake = min(wake, ack_deadline)
            if core.lagging:
                wake = min(wake, now + max(self._ack_delay, 0.01))  # look for room again soon
            try:
                msg = await ws.receive(timeout=max(0.0, wake - now))
            except TimeoutError:
                now = loop.time()
                await self._ack(now)
                if now < last_heard + dead_after:
                    continue
                log.info("server silent for %.1fs: treating the link as dead", now - last_heard)
                await _abort(ws)
                return _Outcome(None, "server heartbeat timeout")
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return self._closed_outcome(ws, outcome)
            last_heard = loop.time()
            message = protocol_json(msg.data)
            kind = message.get("type")
            seq = message.get("seq")
            verdict = core.receive(seq if isinstance(seq, int) else None, room=self._events.room, now=last_heard)
            if verdict is Inbound.GAP:
                log.warning("gap in server seq: expected %d, got %s; resuming", core.last_seq + 1, seq)
                await _abort(ws)
                return _Outcome(None, "sequence gap")
            if verdict is not Inbound.ACCEPT:
                continue  # a duplicate, or held for the replay
            stamped = isinstance(seq, int)
            if kind == "ping":
                await self._write(core.ping(message))
                self._confirmed()
                if isinstance(message.get("rtt_ms"), int | float):
                    self.rtt_ms = float(message["rtt_ms"])
                announced = message.get("timeout_ms")
                if isinstance(announced, int) and not isinstance(announced, bool) and announced > 0:
                    # The server adapts its silence timeout to this link's RTT; ours follows.
                    dead_after = announced / 1000
            elif kind == "error":
                if "retry_after_ms" in message:
                    outcome.retry_after = message["retry_after_ms"] / 1000
                outcome.reason = f"{message.get('code')}: {message.get('message')}"
                if message.get("code") != "replay-overflow":
                    error = ErrorReceived(message["code"], message["message"], message.get("cseq"), message.get("target"))
                    self._deliver(error, stamped)
            elif kind == "reconnect" and message.get("scope", "session") == "session":
                outcome.reconnect_mode = message["mode"]
                outcome.reconnect_delay = message["delay_ms"] / 1000
            else:
                event = _event(message)
                self._deliver(event, stamped)
                self._track_peers(message)
            await self._ack(loop.time())

    def _deliver(self, event: Event, stamped: bool) -> None:
        if stamped:
            self._events.put(event)  # the core saw room for it
        else:
            self._events.put_unreplayable(event)

    async def _ack(self, now: float) -> None:
        seq = self._core.ack_due(now)
        if seq is not None:
            await self._write({"type": "ack", "seq": seq})

    def _track_peers(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "peer-joined":
            self.peers[message["peer"]["id"]] = message["peer"]["name"]
        elif kind == "peer-left":
            self.peers.pop(message["peer"], None)


def protocol_json(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ClientError("server sent a non-object frame")
    return value


def _event(message: dict[str, Any]) -> Event:
    match message.get("type"):
        case "peer-joined":
            return PeerJoined(message["peer"]["id"], message["peer"]["name"])
        case "peer-left":
            return PeerLeft(message["peer"], message.get("reason", ""))
        case "peer-reconnecting":
            return PeerReconnecting(message["peer"])
        case "peer-resumed":
            return PeerResumed(message["peer"])
        case "signal":
            return SignalReceived(message["from"], message["data"], message["seq"])
        case "data":
            to = message.get("to")
            return DataReceived(message["from"], message["topic"], message["payload"], message["seq"],
                                tuple(to) if isinstance(to, list) else None)
    return ServerMessage(message)


async def _abort(ws: aiohttp.ClientWebSocketResponse) -> None:
    with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
        async with asyncio.timeout(0.5):
            await ws.close(code=Close.GOING_AWAY.code)
