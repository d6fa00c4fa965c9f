"""The hub: sessions, rooms and routing on one node.

It binds connections to sessions, stamps every session message with its ``seq`` (through
:class:`~signaling.core.session.Session`), relays ``signal`` between peers of one room only, runs the
grace period of detached sessions, and forwards media requests to the SFU. Membership and
delivery to other peers go through the :class:`~signaling.backend.Backend`, so the same hub
works alone in memory or as one node of a Redis cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from signaling.backend import Backend, BackendUnavailable, Member, SessionMoved
from signaling.backend.base import Written
from signaling.backend.media import MEDIA_REFUSALS, MediaPort
from signaling.core import protocol
from signaling.core.auth import DEV_IDENTITY_GRANTS, AuthError, TokenVerifier, missing_grant
from signaling.core.backoff import Backoff
from signaling.core.codes import Close, Err, ErrorCode
from signaling.core.config import ServerConfig
from signaling.core.errors import PeerError, ResumeRefusal, ResumeRefused
from signaling.core.heartbeat import HeartbeatPolicy
from signaling.core.protocol import (
    Ack,
    Candidate,
    ClientMessage,
    Data,
    Join,
    Leave,
    Pong,
    ProtocolError,
    Publish,
    SetSubscription,
    Signal,
    StrictJSONError,
    SubscriberAnswer,
    TrackState,
    Unpublish,
)
from signaling.core.ratelimit import TokenBucket
from signaling.core.sdpcheck import SdpError, check_candidate, check_sdp
from signaling.core.session import (
    AckError,
    ReplayOverflow,
    Session,
    SessionState,
    Stamped,
)
from signaling.core.sfu_rpc import VIA
from signaling.runtime.leakwatch import LeakWatch
from signaling.runtime.metrics import Metrics
from signaling.runtime.tasks import OwnerKind, TaskRegistry, adopt
from signaling.server.connection import Connection
from signaling.server.webhooks import WebhookSender

if TYPE_CHECKING:  # the registry (and redis-py) is loaded only by cluster nodes
    from signaling.cluster.ledger import SessionLedger, Taken
    from signaling.cluster.registry import NodeRegistry

log = logging.getLogger(__name__)

#: A busy client gets its messages confirmed after this many, not only on the next ping.
CONFIRM_EVERY = 32

#: Builds the ``ice_servers`` of a welcome for a peer id (fresh TURN credentials each time).
IceServers = Callable[[str], list[dict[str, Any]]]


@dataclass(eq=False, slots=True)
class Live:
    """A session with its runtime attachments on this node."""

    session: Session
    conn: Connection | None = None
    subscribe: bool = True
    grace: asyncio.Task[None] | None = None
    reconnecting_announced: bool = False
    rtt: float | None = None
    grants: frozenset[str] = DEV_IDENTITY_GRANTS
    identity: str = ""
    candidates: int = 0
    #: Highest cseq confirmed to the client (by ping or welcome).
    confirmed_cseq: int = 0
    #: Highest cseq whose handling finished: what the ledger may record (never one in flight).
    settled_cseq: int = 0
    joined_at: float = field(default_factory=time.time)
    #: Highest seq that may reach the client: in the ledger (cluster) or just stamped (memory).
    durable_seq: int = 0
    #: Highest seq written to the current connection.
    sent_seq: int = 0
    #: What the ledger keeps about the session besides its stream (cluster only).
    meta: str = ""
    token_hash: str = ""
    #: ``data`` messages of this session (created on the first one).
    data_bucket: TokenBucket | None = None
    #: Seconds a session that said ``leave {linger_ms}`` stays resumable (a page reloading).
    linger: float | None = None
    #: A WHIP publisher or WHEP player: in the room, never on a WebSocket; nothing is stamped
    #: or buffered for it (its media signaling is HTTP, see signaling.server.whip_http).
    headless: bool = False


class HeadlessRefused(PeerError):
    """A headless participant cannot join: ``reason`` is draining, node-full or room-full."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(eq=False, slots=True)
class _Release:
    """How far the end of a session got: a release repeated after a Redis failure goes on
    from there (no second webhook, no second peer-left)."""

    live: Live
    reason: str
    notify: bool
    #: A removal attempt failed: it may have landed, so "not there" afterwards means "ours".
    uncertain: bool = False
    removed: bool = False
    #: Members still to be told ``peer-left`` (None: nobody, or done).
    remaining: list[Member] | None = None
    media_left: bool = False


class Hub:
    def __init__(
        self,
        config: ServerConfig,
        backend: Backend,
        metrics: Metrics,
        *,
        media: MediaPort | None = None,
        ice_servers: IceServers | None = None,
        webhooks: WebhookSender | None = None,
        registry: NodeRegistry | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.metrics = metrics
        self.media = media
        self.webhooks = webhooks
        #: The cluster's node registry (with Redis): this node is listed there while it lives.
        self.registry = registry
        self._ice_servers = ice_servers or (lambda _peer: [])
        self._sessions: dict[str, Live] = {}
        self._by_peer: dict[str, Live] = {}
        #: Sessions per room on this node (for the rooms-per-node limit).
        self._rooms: dict[str, int] = {}
        self._connections: set[Connection] = set()
        self._tasks = TaskRegistry("hub", OwnerKind.HUB)
        #: The task-leak alarm; its last alert is shown by ``GET /admin/debug/tasks``.
        self.leaks = LeakWatch(lambda: self._sessions.keys(), config.session.leak_sample_interval)
        #: Cluster: session writes for cross-node resume (None: sessions live and die here).
        self._ledger: SessionLedger | None = None
        #: Cluster: resumes from another node in flight, and what arrived meanwhile for peers
        #: this node does not hold yet (one of them may be the peer being taken over).
        self._takes = 0
        self._unclaimed: list[tuple[str, dict[str, Any], str]] = []
        keys = dict(config.security.token_keys)
        #: None in dev mode: every join gets the default grants.
        self._verifier = TokenVerifier(keys) if keys else None
        self.draining = False
        #: Set whenever a session leaves this node (ended or moved): what a drain waits on.
        self._session_gone = asyncio.Event()
        #: Cluster: whether an SFU node is the one this node uses for a room now (see
        #: :data:`signaling.core.sfu_rpc.VIA`); None: every SFU message is delivered.
        self.media_current: Callable[[str, str], bool] | None = None
        # Counted at scrape time, not on every join: a sum per join would be quadratic.
        metrics.sessions.labels("attached").set_function(self._attached_count)
        metrics.sessions.labels("detached").set_function(lambda: len(self._sessions) - self._attached_count())
        metrics.rooms.set_function(lambda: len(self._rooms))

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.backend.control = self._control
        await self.backend.start(self.config.node_id, self.deliver)
        self._ledger = self.backend.session_ledger()
        if self.registry is not None:
            from signaling.cluster.registry import NodeInfo

            cfg = self.config
            await self.registry.register(
                NodeInfo(id=cfg.node_id, kind="signaling", address=f"http://{cfg.host}:{cfg.port}",
                         capacity=cfg.security.max_rooms)
            )
        if self.backend.clustered:
            self._tasks.spawn(self._reaper(self.config.cluster.reap_interval), name="reaper")
        if self.webhooks is not None:
            self.webhooks.start()
        if self.leaks.interval > 0:
            self._tasks.spawn(self.leaks.run(), name="leak-watch")

    async def close(self) -> None:
        """Close every connection (1001) and stop every task; sessions die with the node.

        Connections and sessions are ended under one deadline (``limits.shutdown_timeout``);
        what is left when it passes is abandoned with a warning (the members expire with this
        node: the reaper of another node removes them).
        """
        deadline = asyncio.get_running_loop().time() + self.config.limits.shutdown_timeout
        for conn in list(self._connections):
            conn.close(Close.GOING_AWAY, "server shutting down", flush=False)
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.gather(*(c.done.wait() for c in list(self._connections)))
        except TimeoutError:
            log.warning("shutdown: %d connections still closing at the deadline", len(self._connections))
        await self._tasks.close()
        sessions = list(self._sessions.values())
        ended = 0
        try:
            async with asyncio.timeout_at(deadline):
                for live in sessions:
                    try:
                        await self._end(live, "shutdown", notify=False, patient=False)
                    except BackendUnavailable as exc:
                        # Redis is gone: the members expire with this node (the reaper of another node).
                        log.warning("shutdown: could not remove %s: %s", live.session.peer_id, exc)
                    ended += 1
        except TimeoutError:
            log.warning("shutdown: deadline passed with %d of %d sessions not ended; their members expire "
                        "with this node", len(sessions) - ended, len(sessions))
        if self.registry is not None:
            await self.registry.close()
        if self.media is not None:
            await self.media.close()
        if self.webhooks is not None:
            await self.webhooks.close(self.config.limits.close_timeout)
        await self.backend.close()

    async def drain(self, deadline: float) -> None:
        """Stop taking sessions, tell every client to reconnect elsewhere, wait up to ``deadline`` s.

        In a cluster it also waits (same deadline) until every session has resumed on another node:
        what is still here when the node closes ends (its client rejoins)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline
        self.draining = True
        if self.registry is not None:
            try:
                await self.registry.set_draining()
            except BackendUnavailable:
                log.warning("drain: could not mark this node draining in the registry")
        delay = self.config.drain_reconnect_delay_ms
        attached = [live for live in self._sessions.values() if live.conn is not None]
        for live in attached:
            self._emit(live, protocol.reconnect("resume", delay))
        await self._flushed()
        for live in attached:
            if live.conn is not None:
                live.conn.close(Close.GOING_AWAY, "draining")
        pending = [c.done.wait() for c in list(self._connections)]
        if pending:
            try:
                async with asyncio.timeout_at(until):
                    await asyncio.gather(*pending)
            except TimeoutError:
                log.warning("drain: %d connections still open after %.1fs", len(self._connections), deadline)
        if self.backend.clustered and self._sessions:
            try:
                async with asyncio.timeout_at(until):
                    while self._sessions:
                        self._session_gone.clear()
                        await self._session_gone.wait()
                log.info("drain: every session resumed on another node")
            except TimeoutError:
                log.warning("drain: %d session(s) not resumed on another node after %.1fs; they end",
                            len(self._sessions), deadline)

    async def run_connection(self, conn: Connection) -> None:
        self._connections.add(conn)
        if (handler := asyncio.current_task()) is not None:
            adopt(handler, OwnerKind.CONNECTION, f"connection:{conn.remote}")
        try:
            await conn.run(self)
        finally:
            self._connections.discard(conn)
            self._detach(conn)

    # -- introspection (admin, metrics, tests) --------------------------------------------------

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    @property
    def task_count(self) -> int:
        return len(self._tasks)

    def sessions(self) -> list[Live]:
        return list(self._sessions.values())

    def disconnect(self, session_id: str) -> bool:
        """Drop a session's socket but keep the session: the client resumes (ops, tests)."""
        live = self._sessions.get(session_id)
        if live is None or live.conn is None:
            return False
        live.conn.close(Close.GOING_AWAY, "disconnected by operator", flush=False)
        return True

    async def kick(self, peer_id: str, reason: str = "kicked") -> bool:
        """End a participant's session; its client sees 4006 and does not reconnect."""
        live = self._by_peer.get(peer_id)
        if live is None:
            return False
        if live.conn is not None:
            self._emit(live, protocol.error(Err.FORBIDDEN, f"kicked: {reason}"))
            await self._flushed()
        if live.conn is not None:
            live.conn.close(Close.KICKED, reason[:100])
        await self._end(live, "kicked")
        return True

    async def mute(self, peer_id: str, track_id: str, muted: bool) -> bool:
        """Operator mute of a published track (the SFU stops forwarding it). False: no such peer."""
        live = self._by_peer.get(peer_id)
        if live is None or self.media is None:
            return False
        await self.media.mute(live.session.room, peer_id, track_id, muted)
        return True

    async def close_room(self, room: str) -> int:
        """Kick every participant of ``room`` held by this node."""
        peers = [live.session.peer_id for live in self._sessions.values() if live.session.room == room]
        for peer in peers:
            await self.kick(peer, "room closed")
        return len(peers)

    # -- inbound --------------------------------------------------------------------------------

    async def on_error(self, conn: Connection, error: ProtocolError) -> None:
        self.metrics.errors.labels(error.error.code).inc()
        message = protocol.error(error.error, error.message, cseq=error.cseq, retry_after_ms=error.retry_after_ms)
        live = self._live(conn)
        if live is not None:
            self._emit(live, message)
        else:
            conn.send_message(message)

    async def on_message(self, conn: Connection, message: ClientMessage) -> None:
        live = self._live(conn)
        if live is None:
            if isinstance(message, Join):
                await self._join(conn, message)
            else:
                await self.on_error(conn, ProtocolError(Err.NOT_JOINED, "send join first"))
            return
        session = live.session
        match message:
            case Ack(seq=seq):
                try:
                    if session.ack(seq) and self._ledger is not None:
                        self._ledger.frames(session.id, meta=live.meta, tok=live.token_hash, frames=[],
                                            last_cseq=live.settled_cseq, acked=session.acked_seq)
                except AckError as exc:
                    await self.on_error(conn, ProtocolError(Err.BAD_MESSAGE, str(exc)))
            case Pong(t=t):
                rtt = conn.rtt(t)
                if rtt is not None:
                    live.rtt = conn.last_rtt = rtt
                    self.metrics.rtt.observe(rtt)
            case Join():
                await self.on_error(conn, ProtocolError(Err.ALREADY_JOINED, "this connection has joined already"))
            case Leave(linger_ms=linger_ms) if linger_ms > 0:
                # A page that may be reloading: resumable for a moment, then it has left.
                live.linger = linger_ms / 1000
                conn.close(Close.NORMAL, "left")
            case Leave():
                await self._end(live, "left")
                conn.close(Close.NORMAL, "left")
            case (
                Signal() | Publish() | SubscriberAnswer() | Candidate() | Unpublish() | TrackState() | Data()
                | SetSubscription()
            ):
                previous = session.last_cseq
                if not session.accept_cseq(message.cseq):
                    self.metrics.duplicates.inc()
                    return
                try:
                    await self._sequenced(live, conn, message)
                except SessionMoved:
                    self._moved(live)
                    return
                except BackendUnavailable:
                    # Not done, so not confirmed: the client resends it after resuming.
                    session.retract_cseq(message.cseq, previous)
                    conn.close(Close.INTERNAL, "backend unavailable", flush=False)
                    return
                live.settled_cseq = session.last_cseq
                if session.last_cseq - live.confirmed_cseq >= CONFIRM_EVERY:
                    live.confirmed_cseq = session.last_cseq
                    conn.confirm(session.last_cseq)

    async def _sequenced(self, live: Live, conn: Connection, message: protocol.Sequenced) -> None:
        refusal = self._refuse(live, message)
        if refusal is not None:
            await self.on_error(conn, refusal)
            return
        if isinstance(message, Signal):
            await self._relay(live, conn, message)
            return
        if isinstance(message, Data):
            await self._relay_data(live, conn, message)
            return
        media = self.media
        if media is None:
            await self.on_error(conn, ProtocolError(Err.SFU_UNAVAILABLE, "this node runs no SFU", cseq=message.cseq))
            return
        room, peer = live.session.room, live.session.peer_id
        try:
            match message:
                case Publish(sdp=sdp, tracks=tracks):
                    info = [{"id": t.id, "source": t.source, "muted": t.muted} for t in tracks]
                    answer = await (media.publish(room, peer, sdp, tracks=info) if info else media.publish(room, peer, sdp))
                    self._emit(live, {"type": "publish-answer", "sdp": answer, "cseq": message.cseq})
                case TrackState(track=track, muted=muted):
                    await media.set_track_state(room, peer, track, muted)
                case SubscriberAnswer(sdp=sdp):
                    await media.subscriber_answer(room, peer, sdp)
                case Candidate(target=target, candidate=candidate):
                    await media.add_candidate(room, peer, target, candidate)
                case Unpublish(track=track):
                    await media.unpublish(room, peer, track)
                case SetSubscription(track=track, quality=quality):
                    await media.set_subscription(room, peer, track, quality)
        except MEDIA_REFUSALS as exc:
            # The SFU rejects bad SDP, unknown tracks and the like with a coded error.
            error = _media_error(exc.code)
            if error is Err.INTERNAL:
                log.error("media request %s of %s refused with unknown code %r", type(message).__name__, peer, exc.code)
            await self.on_error(conn, ProtocolError(error, str(exc) or error.meaning, cseq=message.cseq))
        except Exception as exc:
            # Anything else is still this request's failure, never the connection's.
            log.exception("media request %s of %s failed", type(message).__name__, peer)
            await self.on_error(conn, ProtocolError(Err.INTERNAL, str(exc) or Err.INTERNAL.meaning, cseq=message.cseq))

    def _refuse(self, live: Live, message: protocol.Sequenced) -> ProtocolError | None:
        """Grants and limits, checked before anything is relayed or reaches the SFU."""
        grant = missing_grant(message, live.grants)
        if grant is not None:
            return ProtocolError(Err.FORBIDDEN, f"the token does not grant {grant}", cseq=message.cseq)
        limits = self.config.security
        if isinstance(message, Data):
            return self._refuse_data(live, message)
        try:
            if isinstance(message, Publish | SubscriberAnswer):
                check_sdp(message.sdp, max_lines=limits.max_sdp_lines)
            elif isinstance(message, Candidate):
                live.candidates += 1
                if live.candidates > limits.max_candidates_per_session:
                    return ProtocolError(
                        Err.LIMIT_EXCEEDED, f"more than {limits.max_candidates_per_session} candidates", cseq=message.cseq
                    )
                if message.candidate is not None:
                    check_candidate(message.candidate.get("candidate", ""))
        except SdpError as exc:
            return ProtocolError(Err.BAD_SDP, str(exc), cseq=message.cseq)
        return None

    def _refuse_data(self, live: Live, message: Data) -> ProtocolError | None:
        """``data`` has its own rate (its grant was checked by :func:`~signaling.core.auth.missing_grant`)."""
        sec = self.config.security
        if live.data_bucket is None:
            live.data_bucket = TokenBucket(sec.data_rate, sec.data_burst)
        if not live.data_bucket.take(time.monotonic()):
            wait_ms = round(live.data_bucket.wait_time() * 1000) + 1
            return ProtocolError(
                Err.RATE_LIMITED, f"more than {sec.data_rate:g} data messages per second", cseq=message.cseq,
                retry_after_ms=wait_ms,
            )
        if message.to is not None and live.session.peer_id in message.to:
            return ProtocolError(Err.SELF_TARGET, "cannot send data to yourself", cseq=message.cseq)
        return None

    async def _relay_data(self, live: Live, conn: Connection, message: Data) -> None:
        """Deliver to each recipient through the backend, like ``signal``: every recipient's
        session stamps it (seq, replay, exactly once per session). In a cluster the sender's cseq
        is recorded with the last delivery, so a node dying in the middle of a fan-out can make a
        resent message reach the first recipients twice, never lose it."""
        session = live.session
        frame: dict[str, Any] = {"type": "data", "from": session.peer_id, "topic": message.topic, "payload": message.payload}
        if message.to is None:
            targets = [m.peer_id for m in await self.backend.members(session.room) if m.peer_id != session.peer_id]
        else:
            targets = list(message.to)
            frame["to"] = targets
        missing = []
        for index, peer in enumerate(targets):
            origin = (session.id, message.cseq) if index == len(targets) - 1 else None
            if not await self.backend.send(peer, frame, origin=origin, room=session.room):
                missing.append(peer)
        if missing:
            await self.on_error(
                conn, ProtocolError(Err.UNKNOWN_PEER, f"no peer {', '.join(missing)} in this room", cseq=message.cseq)
            )

    async def _relay(self, live: Live, conn: Connection, message: Signal) -> None:
        session = live.session
        if message.to == session.peer_id:
            await self.on_error(conn, ProtocolError(Err.SELF_TARGET, "cannot signal yourself", cseq=message.cseq))
            return
        # One backend call: the room check happens with the delivery (one Redis round trip in a
        # cluster). A peer of another room is reported exactly like one that does not exist.
        delivered = await self.backend.send(
            message.to, {"type": "signal", "from": session.peer_id, "data": message.data},
            origin=(session.id, message.cseq), room=session.room,
        )
        if not delivered:
            await self.on_error(conn, ProtocolError(Err.UNKNOWN_PEER, f"no peer {message.to} in this room", cseq=message.cseq))

    # -- join and resume ----------------------------------------------------------------------

    def _welcome(self, live: Live, peers: list[Member], *, resumed: bool) -> dict[str, Any]:
        s = self.config.heartbeat
        session = live.session
        return {
            "type": "welcome",
            "protocol": protocol.PROTOCOL_VERSION,
            "session": session.id,
            "resume_token": session.token,
            "peer": session.peer_id,
            "room": session.room,
            "node": self.config.node_id,
            "peers": [protocol.peer_info(m.peer_id, m.name) for m in peers if m.peer_id != session.peer_id],
            "ice_servers": self._ice_servers(session.peer_id),
            "heartbeat": {"interval_ms": round(s.interval * 1000), "timeout_ms": round(s.timeout * 1000)},
            "resumed": resumed,
            "last_cseq": session.last_cseq,
        }

    async def _join(self, conn: Connection, join: Join) -> None:
        try:
            await self._join_or_resume(conn, join)
        except BackendUnavailable as exc:
            log.warning("join refused: backend unavailable: %s", exc)
            conn.send_message(protocol.error(Err.INTERNAL, "state backend unavailable, retry"))
            conn.close(Close.INTERNAL, "backend unavailable")

    async def _join_or_resume(self, conn: Connection, join: Join) -> None:
        if self.draining:
            conn.send_message(protocol.error(Err.SHUTTING_DOWN, "this node is draining"))
            conn.close(Close.GOING_AWAY, "draining")
            return
        if join.resume is not None:
            if self._verifier is not None and not self._resume_authorized(conn, join):
                return
            await self._resume(conn, join)
            return
        try:
            identity = self._verifier.verify(join.token, join.room) if self._verifier else None
        except AuthError as exc:
            self.metrics.auth_failures.labels(exc.error.code).inc()
            conn.send_message(protocol.error(exc.error, exc.message))
            conn.close(exc.close, exc.error.code)
            return
        grants = identity.grants if identity is not None else DEV_IDENTITY_GRANTS
        name = identity.name if identity is not None and identity.name else join.name
        sec = self.config.security
        if join.room not in self._rooms and len(self._rooms) >= sec.max_rooms:
            conn.send_message(protocol.error(Err.NODE_FULL, f"this node holds {sec.max_rooms} rooms"))
            conn.close(Close.NORMAL, "node full")
            return
        cfg = self.config.session
        session = Session(room=join.room, name=name, max_messages=cfg.replay_max_messages, max_bytes=cfg.replay_max_bytes)
        member = Member(session.peer_id, session.name, session.room, self.config.node_id)
        before = await self.backend.add_member(member, max_members=sec.max_participants_per_room)
        if before is None:
            conn.send_message(protocol.error(Err.ROOM_FULL, f"room {join.room} is full"))
            conn.close(Close.NORMAL, "room full")
            return
        live = Live(
            session,
            subscribe=join.subscribe and "subscribe" in grants,
            grants=grants,
            identity=identity.identity if identity is not None else "",
        )
        if self._ledger is not None:
            from signaling.cluster.ledger import token_hash

            live.token_hash = token_hash(session.token)
            live.meta = protocol.encode({
                "peer": session.peer_id, "room": session.room, "name": session.name,
                "grants": sorted(grants), "identity": live.identity, "subscribe": live.subscribe,
            })
        self._rooms[join.room] = self._rooms.get(join.room, 0) + 1
        self._sessions[session.id] = live
        self._by_peer[session.peer_id] = live
        self._attach(live, conn)
        self._emit(live, self._welcome(live, before, resumed=False))
        if self.webhooks is not None:
            if not before:
                self.webhooks.room_started(session.room)
            self.webhooks.participant_joined(
                session.room, peer=session.peer_id, name=session.name, session=session.id, identity=live.identity
            )
        peer = protocol.peer_info(session.peer_id, session.name)
        for other in before:
            await self.backend.send(other.peer_id, {"type": "peer-joined", "peer": peer})
        log.info("peer %s joined room %s", session.peer_id, session.room, extra=self._log_ids(session))
        if self.media is not None:
            # Every participant may publish (grants permitting); only subscribers get offers.
            if join.codecs is None:
                await self._media_call(self.media.join(session.room, session.peer_id, subscribe=live.subscribe))
            else:
                await self._media_call(
                    self.media.join(session.room, session.peer_id, subscribe=live.subscribe, codecs=join.codecs)
                )

    def _resume_authorized(self, conn: Connection, join: Join) -> bool:
        """With access tokens, a resume presents one too (the SDKs send the one they hold or a
        fresh one from their token provider), checked like a join's: key, signature, expiry,
        room. A session does not outlive its grant: without a valid token the resume gets
        ``unauthorized`` + 4001 (``forbidden`` + 4003 for another room), no welcome and no TURN
        credentials; the session stays detached and a valid token can still resume it within
        the grace period. The grants stay those of the join (a refreshed token cannot widen them).
        """
        assert self._verifier is not None
        try:
            self._verifier.verify(join.token, join.room)
        except AuthError as exc:
            self.metrics.auth_failures.labels(exc.error.code).inc()
            self.metrics.resume_failures.labels(ResumeRefusal.UNAUTHORIZED.value).inc()
            conn.send_message(protocol.error(exc.error, f"resume: {exc.message}"))
            conn.close(exc.close, exc.error.code)
            return False
        return True

    async def join_headless(
        self, room: str, name: str, *, grants: frozenset[str], identity: str, subscribe: bool
    ) -> str:
        """Add a participant that has no WebSocket (WHIP publisher, WHEP player); return its
        peer id. Peers see ``peer-joined`` as for anyone. Raises :class:`HeadlessRefused`."""
        if self.draining:
            raise HeadlessRefused("draining", "this node is draining")
        sec = self.config.security
        if room not in self._rooms and len(self._rooms) >= sec.max_rooms:
            raise HeadlessRefused("node-full", f"this node holds {sec.max_rooms} rooms")
        cfg = self.config.session
        session = Session(room=room, name=name, max_messages=cfg.replay_max_messages, max_bytes=cfg.replay_max_bytes)
        before = await self.backend.add_member(
            Member(session.peer_id, session.name, session.room, self.config.node_id),
            max_members=sec.max_participants_per_room,
        )
        if before is None:
            raise HeadlessRefused("room-full", f"room {room} is full")
        live = Live(session, subscribe=subscribe, grants=grants, identity=identity, headless=True)
        session.state = SessionState.ATTACHED
        self._rooms[room] = self._rooms.get(room, 0) + 1
        self._sessions[session.id] = live
        self._by_peer[session.peer_id] = live
        if self.webhooks is not None:
            if not before:
                self.webhooks.room_started(room)
            self.webhooks.participant_joined(
                room, peer=session.peer_id, name=session.name, session=session.id, identity=identity
            )
        peer = protocol.peer_info(session.peer_id, session.name)
        for other in before:
            await self.backend.send(other.peer_id, {"type": "peer-joined", "peer": peer})
        log.info("headless peer %s joined room %s", session.peer_id, room, extra=self._log_ids(session))
        return session.peer_id

    def has_peer(self, peer_id: str) -> bool:
        return peer_id in self._by_peer

    async def end_headless(self, peer_id: str, reason: str = "left") -> bool:
        """End a headless participant (DELETE of its WHIP/WHEP resource)."""
        live = self._by_peer.get(peer_id)
        if live is None or not live.headless:
            return False
        await self._end(live, reason)
        return True

    async def _resume(self, conn: Connection, join: Join) -> None:
        assert join.resume is not None
        live = self._sessions.get(join.resume.session)
        if live is None and self._ledger is not None:
            await self._resume_from_ledger(conn, join, self._ledger)
            return
        # Read the room first: from the attach to the last replayed frame nothing may await (a
        # frame sent meanwhile would overtake the welcome). The session may end during the read.
        members = await self.backend.members(join.room) if live is not None else []
        live = self._sessions.get(join.resume.session)
        try:
            if live is None or live.session.room != join.room:
                raise ResumeRefused(ResumeRefusal.UNKNOWN, "unknown or expired session")
            frames = live.session.resume(join.resume.token, join.resume.last_seq)
        except ResumeRefused as exc:
            self.metrics.resume_failures.labels(exc.reason.value).inc()
            conn.send_message(protocol.error(Err.RESUME_FAILED, str(exc)))
            conn.close(Close.SESSION_UNKNOWN, "resume failed")
            return
        old = live.conn
        if old is not None:
            old.close(Close.REPLACED, "replaced by a newer connection", flush=False)
            old.session_id = None
        if live.grace is not None:
            live.grace.cancel()
            live.grace = None
        live.linger = None
        self._attach(live, conn)
        if self._ledger is not None:
            self._ledger.frames(live.session.id, meta=live.meta, tok=live.token_hash, frames=[],
                                last_cseq=live.settled_cseq, acked=live.session.acked_seq)
        # Frames not yet in the ledger follow from its writer, as they would have anyway.
        frames = [f for f in frames if f.seq <= live.durable_seq]
        welcome = self._welcome(live, members, resumed=True)
        welcome["replayed"] = len(frames)
        conn.send_message(welcome, force=True)
        live.sent_seq = join.resume.last_seq
        for stamped in frames:
            conn.send(stamped.frame, force=True)
            live.sent_seq = stamped.seq
        self.metrics.resumes.inc()
        self.metrics.replayed.inc(len(frames))
        log.info("session %s resumed, %d messages replayed", live.session.id, len(frames), extra=self._log_ids(live.session))
        if join.resume.fresh_media:
            await self._fresh_media(live)
        if live.reconnecting_announced:
            live.reconnecting_announced = False
            await self._broadcast(live, {"type": "peer-resumed", "peer": live.session.peer_id})

    async def _resume_from_ledger(self, conn: Connection, join: Join, ledger: SessionLedger) -> None:
        """Resume a session another node held (it died, or the client came here): take it over
        in Redis, replay what the client missed, then stamp what that node received and never
        stamped. Deliveries for peers not held here wait in ``_unclaimed`` meanwhile."""
        from signaling.cluster.ledger import token_hash

        assert join.resume is not None
        resume = join.resume
        self._takes += 1
        try:
            try:
                taken = await ledger.take(resume.session, join.room, resume.token, resume.last_seq)
                live = self._adopt(resume.session, resume.token, resume.last_seq, taken)
            except ResumeRefused as exc:
                self.metrics.resume_failures.labels(exc.reason.value).inc()
                conn.send_message(protocol.error(Err.RESUME_FAILED, str(exc)))
                conn.close(Close.SESSION_UNKNOWN, "resume failed")
                return
            live.token_hash = token_hash(resume.token)
            # Before anything else can be stamped for this peer: first what the previous owner
            # received and never stamped, then what came here while the take was in flight.
            for message in taken.pending:
                self._emit(live, message)
            peer = live.session.peer_id
            for _peer, message, source in [u for u in self._unclaimed if u[0] == peer]:
                self._emit(live, message, source)
        finally:
            self._takes -= 1
            if not self._takes:
                self._unclaimed.clear()
        members = await self._members_or_empty(live.session.room)
        if live.session.state is SessionState.ENDED:  # moved on again meanwhile
            conn.close(Close.REPLACED, "resumed on another node", flush=False)
            return
        # No await from here to the last replayed frame: nothing can overtake the replay.
        self._attach(live, conn)
        frames = [f for f in live.session.pending() if f.seq <= live.durable_seq]
        welcome = self._welcome(live, members, resumed=True)
        welcome["replayed"] = len(frames)
        conn.send_message(welcome, force=True)
        for stamped in frames:
            conn.send(stamped.frame, force=True)
            live.sent_seq = stamped.seq
        if self.media is not None:
            # The media side follows: a later SFU failover moves this participant from here.
            await self._media_call(self.media.adopt(live.session.room, live.session.peer_id, subscribe=live.subscribe))
        if resume.fresh_media:
            await self._fresh_media(live)
        self.metrics.resumes.inc()
        self.metrics.replayed.inc(len(frames))
        log.info("session %s resumed from node %s, %d replayed, %d pending", live.session.id, taken.previous_owner,
                 len(frames), len(taken.pending), extra=self._log_ids(live.session))
        if taken.previous_owner != self.config.node_id:
            await self._broadcast(live, {"type": "peer-resumed", "peer": live.session.peer_id})

    async def _fresh_media(self, live: Live) -> None:
        """A resumed client without its peer connections (a reloaded page): the SFU forgets the
        old ones (the others see its tracks go) and takes the participant afresh (it hears the
        room's tracks again); the client publishes again."""
        if self.media is None:
            return
        room, peer = live.session.room, live.session.peer_id
        await self._media_call(self.media.leave(room, peer))
        await self._media_call(self.media.join(room, peer, subscribe=live.subscribe))

    def _adopt(self, session_id: str, token: str, last_seq: int, taken: Taken) -> Live:
        meta = taken.meta
        cfg = self.config.session
        session = Session.restore(
            session_id=session_id, peer_id=meta["peer"], room=meta["room"], name=meta["name"], token=token,
            acked_seq=last_seq, last_cseq=taken.last_cseq,
            frames=[Stamped(seq, frame) for seq, frame in taken.frames],
            max_messages=cfg.replay_max_messages, max_bytes=cfg.replay_max_bytes,
        )
        live = Live(session, subscribe=bool(meta.get("subscribe", True)), grants=frozenset(meta.get("grants", [])),
                    identity=str(meta.get("identity", "")), meta=protocol.encode(meta))
        live.confirmed_cseq = live.settled_cseq = session.last_cseq
        live.durable_seq = session.last_seq
        live.sent_seq = last_seq
        self._sessions[session.id] = live
        self._by_peer[session.peer_id] = live
        self._rooms[session.room] = self._rooms.get(session.room, 0) + 1
        self.backend.adopt(Member(session.peer_id, session.name, session.room, self.config.node_id))
        return live

    def _moved(self, live: Live) -> None:
        """The session resumed on another node: let it go here without ending it."""
        session = live.session
        if self._sessions.get(session.id) is not live:
            return
        log.info("session %s moved to another node", session.id, extra=self._log_ids(session))
        conn, live.conn = live.conn, None
        if conn is not None:
            conn.close(Close.REPLACED, "resumed on another node", flush=False)
            conn.session_id = None
        if self._mark_ended(live):
            self.backend.forget(session.peer_id)

    async def _control(self, fields: dict[str, str]) -> None:
        """A control entry of this node's inbox (cluster), or ``reaped`` from the backend."""
        if fields.get("c") == "moved":
            live = self._sessions.get(fields.get("s", ""))
            if live is not None:
                self._moved(live)
        elif fields.get("c") == "reaped":
            self._fence(fields.get("peers", "").split())

    def _fence(self, peers: list[str]) -> None:
        """The cluster reaped this node while it was stalled or cut off: these members are gone
        and their rooms were told ``peer-left {reason: node-lost}``. End their sessions here too
        (4011: the clients rejoin), so nothing is delivered as if nothing had happened."""
        for peer in peers:
            live = self._by_peer.get(peer)
            if live is None:
                continue
            session = live.session
            log.error("session %s ended: this node was reaped while it was away", session.id, extra=self._log_ids(session))
            conn = live.conn
            if conn is not None:
                why = "this node was cut off from the cluster and its sessions ended; rejoin"
                conn.send_message(protocol.error(Err.INTERNAL, why), force=True)
                conn.close(Close.SESSION_UNKNOWN, "node-lost")
            if not self._mark_ended(live):
                continue
            if self._ledger is not None:
                self._ledger.drop(session.id)
            if self.webhooks is not None:
                self.webhooks.participant_left(session.room, peer=session.peer_id, name=session.name, session=session.id,
                                               reason="node-lost", identity=live.identity)
            if self.media is not None:
                self._tasks.spawn(self._media_call(self.media.leave(session.room, session.peer_id)),
                                  name=f"fence:{session.id}")

    async def _flushed(self) -> None:
        """Wait (bounded) until every stamped frame is in the ledger and so on its socket."""
        if self._ledger is None:
            return
        try:
            async with asyncio.timeout(self.config.limits.close_timeout):
                await self._ledger.flushed()
        except TimeoutError:
            log.warning("session ledger did not flush within %.1fs", self.config.limits.close_timeout)

    def _attach(self, live: Live, conn: Connection) -> None:
        live.conn = conn
        live.session.state = SessionState.ATTACHED
        conn.session_id = live.session.id
        # Pings confirm only settled cseqs: one still being relayed may yet fail (a Redis failover)
        # and must then be resent by the client.
        conn.start_heartbeat(HeartbeatPolicy(self.config.heartbeat), lambda: live.settled_cseq)

    def _live(self, conn: Connection) -> Live | None:
        return self._sessions.get(conn.session_id) if conn.session_id is not None else None

    # -- detach, grace, end ---------------------------------------------------------------------

    def _detach(self, conn: Connection) -> None:
        live = self._live(conn)
        if live is None or live.conn is not conn:
            return
        live.conn = None
        if live.session.state is SessionState.ENDED:
            return
        live.session.state = SessionState.DETACHED
        if self.webhooks is not None:
            s = live.session
            self.webhooks.participant_connection_lost(
                s.room, peer=s.peer_id, name=s.name, session=s.id,
                grace_period=self.config.session.grace_period, identity=live.identity,
            )
        live.grace = self._tasks.spawn(self._grace(live), name=f"grace:{live.session.id}",
                                      owner=f"session:{live.session.id}", kind=OwnerKind.SESSION)

    async def _reaper(self, interval: float = 2.0) -> None:
        """Members of nodes that died (cluster backends) are reported ``peer-left`` once; this
        node's load (rooms it holds) goes into the registry's next heartbeat."""
        loop = asyncio.get_running_loop()
        next_refresh = loop.time()
        while True:
            await asyncio.sleep(interval)
            if self.registry is not None and self.registry.info is not None:
                self.registry.update(load=len(self._rooms))
            try:
                if self._ledger is not None and loop.time() >= next_refresh:
                    next_refresh = loop.time() + self._ledger.ttl / 3
                    await self._ledger.refresh(list(self._sessions))
                # With a ledger, a dead node's clients get the grace period to resume elsewhere.
                gone = await self.backend.reap(self.config.session.grace_period if self._ledger else 0.0)
            except BackendUnavailable:
                continue
            for member in gone:
                # Only this call removed them: the room must hear it, however long Redis is away.
                await self._until_done(functools.partial(self._tell_left, member, "node-lost"), "peer-left node-lost")

    async def _tell_left(self, member: Member, reason: str, others: list[Member] | None = None) -> None:
        """``peer-left`` to every other member of ``member``'s room (read now unless given).
        Safe to repeat: each (leaver, recipient) pair is delivered once, whoever sends it."""
        if others is None:
            others = await self.backend.members(member.room)
        message = {"type": "peer-left", "peer": member.peer_id, "reason": reason}
        for other in others:
            if other.peer_id != member.peer_id:
                await self.backend.send(other.peer_id, message, once=f"peer-left:{member.peer_id}:{other.peer_id}")

    async def _until_done(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        """Run ``step`` until the backend stops failing: an outage delays the job, never drops it."""
        backoff = Backoff(base=0.05, cap=2.0)
        while True:
            try:
                await step()
                return
            except BackendUnavailable as exc:
                if backoff.attempt == 0:
                    log.warning("%s: %s; retrying until redis is back", what, exc)
                await asyncio.sleep(backoff.next_delay())

    async def _members_or_empty(self, room: str) -> list[Member]:
        try:
            return await self.backend.members(room)
        except BackendUnavailable:
            return []

    async def _grace(self, live: Live) -> None:
        if live.linger is not None:
            # It said it left: nobody hears "reconnecting"; it is gone unless it resumes now.
            await asyncio.sleep(min(live.linger, self.config.session.grace_period))
            live.grace = None
            await self._end(live, "left")
            return
        cfg = self.config.session
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.grace_period
        me = asyncio.current_task()

        def current() -> bool:
            # A resume cancels this task, but redis-py can swallow a cancellation that races a
            # completing call (Python 3.11): check, rather than end a session that came back.
            return live.grace is me and live.session.state is SessionState.DETACHED

        async def announce() -> None:
            if current():
                await self._broadcast(live, {"type": "peer-reconnecting", "peer": live.session.peer_id})

        await asyncio.sleep(min(cfg.reconnecting_notice_after, cfg.grace_period))
        if not current():
            return
        live.reconnecting_announced = True
        # Through a Redis outage the notice keeps trying, until the grace period is over.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await self._until_done(announce, "peer-reconnecting")
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        if not current():
            return
        live.grace = None
        await self._end(live, "timeout")

    async def _end(self, live: Live, reason: str, *, notify: bool = True, patient: bool = True) -> None:
        """End a session once: leave the room, tell the others, release media. ``patient``: if
        Redis fails, a task finishes the job once it is back (else the error propagates)."""
        if self._mark_ended(live):
            await self._release(live, reason, notify=notify, patient=patient)

    def _mark_ended(self, live: Live) -> bool:
        """The synchronous half of ending: from here on nothing is stamped or delivered."""
        session = live.session
        if session.state is SessionState.ENDED:
            return False
        session.state = SessionState.ENDED
        grace, live.grace = live.grace, None
        if grace is not None and grace is not asyncio.current_task():
            grace.cancel()
        self._sessions.pop(session.id, None)
        self._by_peer.pop(session.peer_id, None)
        self._session_gone.set()
        left = self._rooms.get(session.room, 0) - 1
        if left > 0:
            self._rooms[session.room] = left
        else:
            self._rooms.pop(session.room, None)
        return True

    async def _release(self, live: Live, reason: str, *, notify: bool, patient: bool = True) -> None:
        session = live.session
        if self._ledger is not None:
            self._ledger.drop(session.id)
        job = _Release(live, reason, notify)
        try:
            await self._release_step(job)
        except BackendUnavailable as exc:
            if not patient:
                raise
            log.warning("peer %s left room %s (%s) while redis is unavailable (%s): finishing once it is back",
                        session.peer_id, session.room, reason, exc, extra=self._log_ids(session))
            try:
                self._tasks.spawn(self._until_done(functools.partial(self._release_step, job), "release"),
                                  name=f"release:{session.id}")
            except RuntimeError:
                log.warning("shutting down: peer %s is left to the reaper", session.peer_id)

    async def _release_step(self, job: _Release) -> None:
        """One attempt at the rest of a release; repeatable until it completes."""
        live, session = job.live, job.live.session
        if not job.removed:
            try:
                remaining = await self.backend.remove_member(session.room, session.peer_id)
            except BackendUnavailable:
                job.uncertain = True
                raise
            if remaining is None and job.uncertain:
                # An earlier attempt may have landed (or a resync removed it): it was ours.
                remaining = [m for m in await self.backend.members(session.room) if m.peer_id != session.peer_id]
            job.removed, job.remaining = True, remaining
            if self.webhooks is not None and remaining is not None:
                self.webhooks.participant_left(
                    session.room, peer=session.peer_id, name=session.name, session=session.id,
                    reason=job.reason, identity=live.identity,
                )
                if not remaining:
                    self.webhooks.room_finished(session.room)
        if job.notify and job.remaining:
            member = Member(session.peer_id, session.name, session.room, self.config.node_id)
            await self._tell_left(member, job.reason, job.remaining)
            job.remaining = None
        if self.media is not None and not job.media_left:
            job.media_left = True
            await self._media_call(self.media.leave(session.room, session.peer_id))
        log.info("peer %s left room %s (%s)", session.peer_id, session.room, job.reason, extra=self._log_ids(session))

    async def _media_call(self, call: Awaitable[None]) -> None:
        """Run an SFU bookkeeping call (join, leave) whose failure must not break signaling:
        a session without media is still a session. Logged with its traceback."""
        try:
            await call
        except Exception:
            log.exception("SFU call failed")

    # -- outbound -------------------------------------------------------------------------------

    async def deliver(self, peer_id: str, message: dict[str, Any], source: str = "") -> None:
        """Backend delivery: a message for a peer whose session lives on this node. ``source``
        is its inbox entry id (cluster), recorded with the frame in the ledger."""
        live = self._by_peer.get(peer_id)
        via = message.get(VIA)
        if via is not None:
            message = {k: v for k, v in message.items() if k != VIA}
            if live is not None and self.media_current is not None and not self.media_current(live.session.room, str(via)):
                log.info("%s for %s from SFU node %s dropped: the room moved to another SFU node",
                         message.get("type"), peer_id, via)
                return
        if live is not None:
            self._emit(live, message, source)
        elif self._takes:
            self._unclaimed.append((peer_id, message, source))

    def on_track(self, room: str, change: str, track: dict[str, Any]) -> None:
        """The SFU's track observer: one webhook per published/unpublished track."""
        if self.webhooks is None:
            return
        if change == "published":
            self.webhooks.track_published(room, track_id=track["id"], peer=track["peer"], kind=track["kind"])
        else:
            self.webhooks.track_unpublished(room, track_id=track["id"], peer=track["peer"], kind=track["kind"])

    def on_recording(self, recording: dict[str, Any]) -> None:
        """The SFU's recording observer: a file was closed (webhook ``recording_finished``)."""
        log.info("recording %s of room %s %s: %s", recording.get("id"), recording.get("room"),
                 recording.get("state"), recording.get("file"))
        if self.webhooks is not None:
            self.webhooks.recording_finished(recording)

    def emit_media(self, peer_id: str, message: dict[str, Any]) -> None:
        """The SFU's outbound channel (synchronous, as the SFU calls it)."""
        live = self._by_peer.get(peer_id)
        if live is not None:
            if message.get("type") == "error":
                self.metrics.errors.labels(message["code"]).inc()
            self._emit(live, message)

    def _emit(self, live: Live, message: dict[str, Any], source: str = "") -> None:
        """Stamp a session message and send it if attached; it waits for replay otherwise.

        In a cluster the frame goes to the ledger first and reaches the socket once it is there
        (in order: one writer), so a client never sees a message a resume elsewhere could miss.
        """
        session = live.session
        if session.state is SessionState.ENDED or live.headless:
            return
        try:
            stamped = session.stamp(message)
        except ReplayOverflow as exc:
            self._lose(live, str(exc))
            return
        except StrictJSONError as exc:
            # Nothing unencodable gets in (protocol.parse), so this is a bug: that one message
            # is dropped with an error log, before it reaches the replay buffer or the ledger.
            log.error("message %s for %s not sent, not strict JSON: %s", message.get("type"), session.peer_id, exc,
                      extra=self._log_ids(session))
            return
        self.metrics.message_out(message["type"])
        ledger = self._ledger
        if ledger is None:
            self._durable(live, stamped, Written.OK)
            return
        queued = ledger.frames(
            session.id, meta=live.meta, tok=live.token_hash, frames=[(stamped.seq, stamped.frame)],
            last_cseq=live.settled_cseq, acked=session.acked_seq, src=source,
            done=lambda written: self._durable(live, stamped, written),
        )
        if not queued:
            self._lose(live, "session ledger queue full")

    def _durable(self, live: Live, stamped: Stamped, written: Written) -> None:
        """A stamped frame is safe to show the client (OK), another node owns the session
        (FENCED), or the frame can never be stored (FAILED: the session's stream has a hole)."""
        if written is Written.FENCED:
            self._moved(live)
            return
        if written is Written.FAILED:
            self._lose(live, f"frame {stamped.seq} could not be stored", code=Err.INTERNAL, reason="internal-error")
            return
        live.durable_seq = max(live.durable_seq, stamped.seq)
        conn = live.conn
        if conn is not None and stamped.seq > live.sent_seq and live.session.state is not SessionState.ENDED:
            conn.send(stamped.frame)
            live.sent_seq = stamped.seq

    def _lose(self, live: Live, why: str, *, code: ErrorCode = Err.REPLAY_OVERFLOW, reason: str = "replay-overflow") -> None:
        """The session cannot go on (its replay buffer overflowed, or a frame of it could not be
        stored): it cannot be resumed either. Say so, end it; other sessions are not touched."""
        if code is Err.REPLAY_OVERFLOW:
            self.metrics.replay_overflows.inc()
            log.warning("session %s lost: %s", live.session.id, why, extra=self._log_ids(live.session))
        else:
            log.error("session %s lost: %s", live.session.id, why, extra=self._log_ids(live.session))
        conn = live.conn
        if conn is not None:
            conn.send_message(protocol.error(code, why), force=True)
            conn.close(Close.SESSION_UNKNOWN, reason)
        if self._mark_ended(live):
            self._tasks.spawn(self._release(live, reason, notify=True), name=f"lose:{live.session.id}",
                              owner=f"session:{live.session.id}", kind=OwnerKind.SESSION)

    async def _broadcast(self, live: Live, message: dict[str, Any]) -> None:
        for other in await self.backend.members(live.session.room):
            if other.peer_id != live.session.peer_id:
                await self.backend.send(other.peer_id, message)

    def _log_ids(self, session: Session) -> dict[str, str]:
        """Structured fields for log records (kept by ``--log-format json``)."""
        return {"session": session.id, "peer": session.peer_id, "room": session.room, "node": self.config.node_id}

    def _attached_count(self) -> int:
        return sum(1 for live in self._sessions.values() if live.conn is not None)


#: The SFU's error codes (``sfu.errors``) as protocol error codes.
_MEDIA_ERRORS = {
    "bad-sdp": Err.BAD_SDP,
    "sfu-error": Err.SFU_ERROR,
    "unknown-track": Err.UNKNOWN_TRACK,
    "not-joined": Err.NOT_JOINED,
    "sfu-unavailable": Err.SFU_UNAVAILABLE,
    "candidate-refused": Err.CANDIDATE_REFUSED,
    "too-many-tracks": Err.TOO_MANY_TRACKS,
}


def _media_error(code: str) -> ErrorCode:
    """A coded SFU refusal keeps its code; an unknown code is our failure (``internal``)."""
    return _MEDIA_ERRORS.get(code, Err.INTERNAL)
