"""The hub: sessions, rooms and routing on one node.

It binds connections to sessions, stamps every session message with its ``seq`` (through
:class:`~signaling.session.Session`), relays ``signal`` between peers of one room only, runs the
grace period of detached sessions, and forwards media requests to the SFU. Membership and
delivery to other peers go through the :class:`~signaling.backend.Backend`, so the same hub
works alone in memory or as one node of a Redis cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from signaling import protocol
from signaling.auth import DEV_IDENTITY_GRANTS, AuthError, TokenVerifier
from signaling.backend import Backend, BackendUnavailable, Member
from signaling.codes import Close, Err, ErrorCode
from signaling.config import ServerConfig
from signaling.connection import Connection
from signaling.heartbeat import HeartbeatPolicy
from signaling.media import MediaPort
from signaling.metrics import Metrics
from signaling.protocol import (
    Ack,
    Candidate,
    ClientMessage,
    Join,
    Leave,
    Pong,
    ProtocolError,
    Publish,
    Signal,
    SubscriberAnswer,
    Unpublish,
)
from signaling.sdpcheck import SdpError, check_candidate, check_sdp
from signaling.session import AckError, ReplayOverflow, ResumeRefused, Session, SessionState
from signaling.tasks import TaskRegistry
from signaling.webhooks import WebhookSender

if TYPE_CHECKING:  # the registry (and redis-py) is loaded only by cluster nodes
    from signaling.backend.registry import NodeRegistry

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
    joined_at: float = field(default_factory=time.time)


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
        self._tasks = TaskRegistry("hub")
        keys = dict(config.security.token_keys)
        #: None in dev mode: every join gets the default grants.
        self._verifier = TokenVerifier(keys) if keys else None
        self.draining = False
        # Counted at scrape time, not on every join: a sum per join would be quadratic.
        metrics.sessions.labels("attached").set_function(self._attached_count)
        metrics.sessions.labels("detached").set_function(lambda: len(self._sessions) - self._attached_count())
        metrics.rooms.set_function(lambda: len(self._rooms))

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.backend.start(self.config.node_id, self.deliver)
        if self.registry is not None:
            from signaling.backend.registry import NodeInfo

            cfg = self.config
            await self.registry.register(
                NodeInfo(id=cfg.node_id, kind="signaling", address=f"http://{cfg.host}:{cfg.port}",
                         capacity=cfg.security.max_rooms)
            )
        if self.backend.clustered:
            self._tasks.spawn(self._reaper(), name="reaper")
        if self.webhooks is not None:
            self.webhooks.start()

    async def close(self) -> None:
        """Close every connection (1001) and stop every task; sessions die with the node."""
        for conn in list(self._connections):
            conn.close(Close.GOING_AWAY, "server shutting down", flush=False)
        await asyncio.gather(*(c.done.wait() for c in list(self._connections)))
        await self._tasks.close()
        for live in list(self._sessions.values()):
            await self._end(live, "shutdown", notify=False)
        if self.registry is not None:
            await self.registry.close()
        if self.media is not None:
            await self.media.close()
        if self.webhooks is not None:
            await self.webhooks.close(self.config.limits.close_timeout)
        await self.backend.close()

    async def drain(self, deadline: float) -> None:
        """Stop taking sessions, tell every client to reconnect elsewhere, wait up to ``deadline`` s."""
        self.draining = True
        if self.registry is not None:
            try:
                await self.registry.set_draining()
            except BackendUnavailable:
                log.warning("drain: could not mark this node draining in the registry")
        delay = self.config.drain_reconnect_delay_ms
        for live in list(self._sessions.values()):
            if live.conn is not None:
                conn = live.conn
                self._emit(live, protocol.reconnect("resume", delay))
                conn.close(Close.GOING_AWAY, "draining")
        pending = [c.done.wait() for c in list(self._connections)]
        if pending:
            try:
                async with asyncio.timeout(deadline):
                    await asyncio.gather(*pending)
            except TimeoutError:
                log.warning("drain: %d connections still open after %.1fs", len(self._connections), deadline)

    async def run_connection(self, conn: Connection) -> None:
        self._connections.add(conn)
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
        conn = live.conn
        if conn is not None:
            self._emit(live, protocol.error(Err.FORBIDDEN, f"kicked: {reason}"))
            conn.close(Close.KICKED, reason[:100])
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
                    session.ack(seq)
                except AckError as exc:
                    await self.on_error(conn, ProtocolError(Err.BAD_MESSAGE, str(exc)))
            case Pong(t=t):
                rtt = conn.rtt(t)
                if rtt is not None:
                    live.rtt = conn.last_rtt = rtt
                    self.metrics.rtt.observe(rtt)
            case Join():
                await self.on_error(conn, ProtocolError(Err.ALREADY_JOINED, "this connection has joined already"))
            case Leave():
                await self._end(live, "left")
                conn.close(Close.NORMAL, "left")
            case Signal() | Publish() | SubscriberAnswer() | Candidate() | Unpublish():
                previous = session.last_cseq
                if not session.accept_cseq(message.cseq):
                    self.metrics.duplicates.inc()
                    return
                try:
                    await self._sequenced(live, conn, message)
                except BackendUnavailable:
                    # Not done, so not confirmed: the client resends it after resuming.
                    session.retract_cseq(message.cseq, previous)
                    conn.close(Close.INTERNAL, "backend unavailable", flush=False)
                    return
                if session.last_cseq - live.confirmed_cseq >= CONFIRM_EVERY:
                    live.confirmed_cseq = session.last_cseq
                    conn.confirm(session.last_cseq)

    async def _sequenced(
        self, live: Live, conn: Connection, message: Signal | Publish | SubscriberAnswer | Candidate | Unpublish
    ) -> None:
        refusal = self._refuse(live, message)
        if refusal is not None:
            await self.on_error(conn, refusal)
            return
        if isinstance(message, Signal):
            await self._relay(live, conn, message)
            return
        media = self.media
        if media is None:
            await self.on_error(conn, ProtocolError(Err.SFU_UNAVAILABLE, "this node runs no SFU", cseq=message.cseq))
            return
        room, peer = live.session.room, live.session.peer_id
        try:
            match message:
                case Publish(sdp=sdp):
                    answer = await media.publish(room, peer, sdp)
                    self._emit(live, {"type": "publish-answer", "sdp": answer, "cseq": message.cseq})
                case SubscriberAnswer(sdp=sdp):
                    await media.subscriber_answer(room, peer, sdp)
                case Candidate(target=target, candidate=candidate):
                    await media.add_candidate(room, peer, target, candidate)
                case Unpublish(track=track):
                    await media.unpublish(room, peer, track)
        except Exception as exc:
            # The SFU rejects bad SDP, unknown tracks and the like with a coded error; anything
            # else it raises is still this request's failure, never the connection's.
            code = getattr(exc, "code", None)
            error = _media_error(code)
            if error is Err.INTERNAL:
                log.exception("media request %s of %s failed", type(message).__name__, peer)
            await self.on_error(conn, ProtocolError(error, str(exc) or error.meaning, cseq=message.cseq))

    def _refuse(
        self, live: Live, message: Signal | Publish | SubscriberAnswer | Candidate | Unpublish
    ) -> ProtocolError | None:
        """Grants and limits, checked before anything is relayed or reaches the SFU."""
        grant = {Signal: "signal", Publish: "publish", Unpublish: "publish", SubscriberAnswer: "subscribe"}.get(type(message))
        if isinstance(message, Candidate):
            grant = "publish" if message.target == "publisher" else "subscribe"
        if grant is not None and grant not in live.grants:
            return ProtocolError(Err.FORBIDDEN, f"the token does not grant {grant}", cseq=message.cseq)
        limits = self.config.security
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

    async def _relay(self, live: Live, conn: Connection, message: Signal) -> None:
        session = live.session
        if message.to == session.peer_id:
            await self.on_error(conn, ProtocolError(Err.SELF_TARGET, "cannot signal yourself", cseq=message.cseq))
            return
        target = await self.backend.member(message.to)
        # A peer of another room is reported exactly like one that does not exist.
        if target is None or target.room != session.room:
            await self.on_error(conn, ProtocolError(Err.UNKNOWN_PEER, f"no peer {message.to} in this room", cseq=message.cseq))
            return
        delivered = await self.backend.send(message.to, {"type": "signal", "from": session.peer_id, "data": message.data})
        if not delivered:
            await self.on_error(conn, ProtocolError(Err.UNKNOWN_PEER, f"peer {message.to} has left", cseq=message.cseq))

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
            await self._media_call(self.media.join(session.room, session.peer_id, subscribe=live.subscribe))

    async def _resume(self, conn: Connection, join: Join) -> None:
        assert join.resume is not None
        live = self._sessions.get(join.resume.session)
        try:
            if live is None or live.session.room != join.room:
                raise ResumeRefused("unknown or expired session")
            frames = live.session.resume(join.resume.token, join.resume.last_seq)
        except ResumeRefused as exc:
            self.metrics.resume_failures.labels(str(exc).split(" ")[0]).inc()
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
        self._attach(live, conn)
        members = await self.backend.members(live.session.room)
        welcome = self._welcome(live, members, resumed=True)
        welcome["replayed"] = len(frames)
        conn.send_message(welcome, force=True)
        for stamped in frames:
            conn.send(stamped.frame, force=True)
        self.metrics.resumes.inc()
        self.metrics.replayed.inc(len(frames))
        log.info("session %s resumed, %d messages replayed", live.session.id, len(frames), extra=self._log_ids(live.session))
        if live.reconnecting_announced:
            live.reconnecting_announced = False
            await self._broadcast(live, {"type": "peer-resumed", "peer": live.session.peer_id})

    def _attach(self, live: Live, conn: Connection) -> None:
        live.conn = conn
        live.session.state = SessionState.ATTACHED
        conn.session_id = live.session.id
        conn.start_heartbeat(HeartbeatPolicy(self.config.heartbeat), lambda: live.session.last_cseq)

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
        live.grace = self._tasks.spawn(self._grace(live), name=f"grace:{live.session.id}")

    async def _reaper(self, interval: float = 2.0) -> None:
        """Members of nodes that died (cluster backends) are reported ``peer-left`` once; this
        node's load (rooms it holds) goes into the registry's next heartbeat."""
        while True:
            await asyncio.sleep(interval)
            if self.registry is not None and self.registry.info is not None:
                self.registry.update(load=len(self._rooms))
            try:
                gone = await self.backend.reap()
            except BackendUnavailable:
                continue
            for member in gone:
                for other in await self._members_or_empty(member.room):
                    await self.backend.send(other.peer_id, {"type": "peer-left", "peer": member.peer_id, "reason": "node-lost"})

    async def _members_or_empty(self, room: str) -> list[Member]:
        try:
            return await self.backend.members(room)
        except BackendUnavailable:
            return []

    async def _grace(self, live: Live) -> None:
        cfg = self.config.session
        notice = min(cfg.reconnecting_notice_after, cfg.grace_period)
        await asyncio.sleep(notice)
        live.reconnecting_announced = True
        await self._broadcast(live, {"type": "peer-reconnecting", "peer": live.session.peer_id})
        await asyncio.sleep(cfg.grace_period - notice)
        live.grace = None
        await self._end(live, "timeout")

    async def _end(self, live: Live, reason: str, *, notify: bool = True) -> None:
        """End a session once: leave the room, tell the others, release media."""
        if self._mark_ended(live):
            await self._release(live, reason, notify=notify)

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
        left = self._rooms.get(session.room, 0) - 1
        if left > 0:
            self._rooms[session.room] = left
        else:
            self._rooms.pop(session.room, None)
        return True

    async def _release(self, live: Live, reason: str, *, notify: bool) -> None:
        session = live.session
        remaining = await self.backend.remove_member(session.room, session.peer_id)
        if self.webhooks is not None and remaining is not None:
            self.webhooks.participant_left(
                session.room, peer=session.peer_id, name=session.name, session=session.id,
                reason=reason, identity=live.identity,
            )
            if not remaining:
                self.webhooks.room_finished(session.room)
        if notify and remaining:
            for other in remaining:
                await self.backend.send(other.peer_id, {"type": "peer-left", "peer": session.peer_id, "reason": reason})
        if self.media is not None:
            await self._media_call(self.media.leave(session.room, session.peer_id))
        log.info("peer %s left room %s (%s)", session.peer_id, session.room, reason, extra=self._log_ids(session))

    async def _media_call(self, call: Awaitable[None]) -> None:
        """Run an SFU bookkeeping call (join, leave) whose failure must not break signaling:
        a session without media is still a session. Logged with its traceback."""
        try:
            await call
        except Exception:
            log.exception("SFU call failed")

    # -- outbound -------------------------------------------------------------------------------

    async def deliver(self, peer_id: str, message: dict[str, Any]) -> None:
        """Backend delivery: a message for a peer whose session lives on this node."""
        live = self._by_peer.get(peer_id)
        if live is not None:
            self._emit(live, message)

    def on_track(self, room: str, change: str, track: dict[str, Any]) -> None:
        """The SFU's track observer: one webhook per published/unpublished track."""
        if self.webhooks is None:
            return
        if change == "published":
            self.webhooks.track_published(room, track_id=track["id"], peer=track["peer"], kind=track["kind"])
        else:
            self.webhooks.track_unpublished(room, track_id=track["id"], peer=track["peer"], kind=track["kind"])

    def emit_media(self, peer_id: str, message: dict[str, Any]) -> None:
        """The SFU's outbound channel (synchronous, as the SFU calls it)."""
        live = self._by_peer.get(peer_id)
        if live is not None:
            self._emit(live, message)

    def _emit(self, live: Live, message: dict[str, Any]) -> None:
        """Stamp a session message and send it if attached; it waits for replay otherwise."""
        if live.session.state is SessionState.ENDED:
            return
        try:
            stamped = live.session.stamp(message)
        except ReplayOverflow as exc:
            self._lose(live, str(exc))
            return
        self.metrics.messages_out.labels(message["type"]).inc()
        if live.conn is not None:
            live.conn.send(stamped.frame)

    def _lose(self, live: Live, why: str) -> None:
        """The replay buffer overflowed: the session cannot be resumed. Say so, end it."""
        self.metrics.replay_overflows.inc()
        log.warning("session %s lost: %s", live.session.id, why, extra=self._log_ids(live.session))
        conn = live.conn
        if conn is not None:
            conn.send_message(protocol.error(Err.REPLAY_OVERFLOW, why), force=True)
            conn.close(Close.SESSION_UNKNOWN, "replay-overflow")
        if self._mark_ended(live):
            self._tasks.spawn(self._release(live, "replay-overflow", notify=True), name=f"lose:{live.session.id}")

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
}


def _media_error(code: object) -> ErrorCode:
    """A coded SFU refusal keeps its code; anything else is our failure (``internal``)."""
    return _MEDIA_ERRORS.get(code, Err.INTERNAL) if isinstance(code, str) else Err.INTERNAL
