"""Who gets into a room on this node, and how a session comes back.

A join is checked (the draining node, the access token, the node's room limit, the room's
participant limit, atomically in the backend), becomes a session and a member, and the room
hears ``peer-joined``; a headless participant (WHIP/WHEP) takes the same path without a socket.
A resume is one path whether the session is held here or must be taken over from another node
(the session store's part: :meth:`signaling.server.store.SessionStore.take_over`): attach, ``welcome``
and the replay with no ``await`` in between, so nothing can overtake the replay.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from signaling.backend import BackendUnavailable, Member
from signaling.core import protocol
from signaling.core.auth import DEV_IDENTITY_GRANTS, AuthError, TokenVerifier
from signaling.core.codes import Close, Err
from signaling.core.errors import ResumeRefusal, ResumeRefused
from signaling.core.protocol import Join
from signaling.core.session import Session, SessionState
from signaling.server.connection import Connection
from signaling.server.live import JoinRefused, Live, refused

if TYPE_CHECKING:
    from signaling.server.hub import Hub, IceServers

log = logging.getLogger(__name__)


class Admission:
    def __init__(self, hub: Hub, ice_servers: IceServers) -> None:
        self.hub = hub
        self._ice_servers = ice_servers
        keys = dict(hub.config.security.token_keys)
        #: None in dev mode: every join gets the default grants.
        self._verifier = TokenVerifier(keys) if keys else None

    async def join(self, conn: Connection, join: Join) -> None:
        try:
            if self.hub.draining:
                raise refused("draining", "this node is draining")
            if join.resume is not None:
                if self._resume_authorized(conn, join):
                    await self._resume(conn, join)
                return
            try:
                identity = self._verifier.verify(join.token, join.room) if self._verifier else None
            except AuthError as exc:
                self.hub.metrics.auth_failures.labels(exc.error.code).inc()
                conn.send_message(protocol.error(exc.error, exc.message))
                conn.close(exc.close, exc.error.code)
                return
            grants = identity.grants if identity is not None else DEV_IDENTITY_GRANTS
            live, before = await self._admit(
                join.room, identity.name if identity is not None and identity.name else join.name,
                grants=grants, identity=identity.identity if identity is not None else "",
                subscribe=join.subscribe and "subscribe" in grants,
            )
            self.hub.attach(live, conn)
            self.hub.emit(live, self._welcome(live, before, resumed=False))
            await self._announce(live, before)
            await self.hub.router.join(live, join.codecs)
        except JoinRefused as exc:
            conn.send_message(protocol.error(exc.error, str(exc)))
            conn.close(Close.GOING_AWAY if exc.reason == "draining" else Close.NORMAL, exc.reason.replace("-", " "))
        except BackendUnavailable as exc:
            log.warning("join refused: backend unavailable: %s", exc)
            conn.send_message(protocol.error(Err.INTERNAL, "state backend unavailable, retry"))
            conn.close(Close.INTERNAL, "backend unavailable")

    async def join_headless(self, room: str, name: str, *, grants: frozenset[str], identity: str, subscribe: bool) -> str:
        """Add a participant that has no WebSocket (WHIP publisher, WHEP player); return its
        peer id. Peers see ``peer-joined`` as for anyone. Raises :class:`JoinRefused`."""
        if self.hub.draining:
            raise refused("draining", "this node is draining")
        live, before = await self._admit(room, name, grants=grants, identity=identity, subscribe=subscribe, headless=True)
        live.session.state = SessionState.ATTACHED
        await self._announce(live, before)
        return live.session.peer_id

    async def _admit(
        self, room: str, name: str, *, grants: frozenset[str], identity: str, subscribe: bool, headless: bool = False
    ) -> tuple[Live, list[Member]]:
        """A new session in ``room`` (and in the backend's membership): the session and the
        members that were there before it. Raises :class:`JoinRefused` (node or room full)."""
        sec, cfg = self.hub.config.security, self.hub.config.session
        if room not in self.hub.table.rooms and len(self.hub.table.rooms) >= sec.max_rooms:
            raise refused("node-full", f"this node holds {sec.max_rooms} rooms")
        session = Session(room=room, name=name, max_messages=cfg.replay_max_messages, max_bytes=cfg.replay_max_bytes)
        live = Live(session, subscribe=subscribe, grants=grants, identity=identity, headless=headless)
        before = await self.hub.backend.add_member(live.member(self.hub.config.node_id), max_members=sec.max_participants_per_room)
        if before is None:
            raise refused("room-full", f"room {room} is full")
        if not headless:
            self.hub.store.joined(live)
        self.hub.table.add(live)
        return live, before

    async def _announce(self, live: Live, before: list[Member]) -> None:
        """A new member: webhooks, and ``peer-joined`` to those who were there before it."""
        session = live.session
        if self.hub.webhooks is not None:
            if not before:
                self.hub.webhooks.room_started(session.room)
            self.hub.webhooks.participant_joined(
                session.room, peer=session.peer_id, name=session.name, session=session.id, identity=live.identity
            )
        peer = protocol.peer_info(session.peer_id, session.name)
        for other in before:
            await self.hub.backend.send(other.peer_id, {"type": "peer-joined", "peer": peer})
        log.info("%speer %s joined room %s", "headless " if live.headless else "", session.peer_id, session.room,
                 extra=live.log_ids(self.hub.config.node_id))

    def _resume_authorized(self, conn: Connection, join: Join) -> bool:
        """With access tokens, a resume presents one too (the SDKs send the one they hold or a
        fresh one from their token provider), checked like a join's: key, signature, expiry,
        room. A session does not outlive its grant: without a valid token the resume gets
        ``unauthorized`` + 4001 (``forbidden`` + 4003 for another room), no welcome and no TURN
        credentials; the session stays detached and a valid token can still resume it within
        the grace period. The grants stay those of the join (a refreshed token cannot widen them).
        """
        if self._verifier is None:
            return True
        try:
            self._verifier.verify(join.token, join.room)
        except AuthError as exc:
            self.hub.metrics.auth_failures.labels(exc.error.code).inc()
            self.hub.metrics.resume_failures.labels(ResumeRefusal.UNAUTHORIZED.value).inc()
            conn.send_message(protocol.error(exc.error, f"resume: {exc.message}"))
            conn.close(exc.close, exc.error.code)
            return False
        return True

    async def _resume(self, conn: Connection, join: Join) -> None:
        """Resume a session held here, or ask the store to take it over from another node (a
        cluster; in memory that session is unknown). Then the same for both: attach, ``welcome``
        and the replay with no ``await`` in between (nothing can overtake the replay)."""
        resume = join.resume
        assert resume is not None
        #: The node that held the session, if the store took it over (None: held here).
        previous_owner: str | None = None
        try:
            if resume.session in self.hub.table.by_id:
                # Read the room first: from the attach to the last replayed frame nothing may
                # await. The session may end during the read.
                members = await self.hub.backend.members(join.room)
                live = self.hub.table.by_id.get(resume.session)
                if live is None or live.session.room != join.room:
                    raise ResumeRefused(ResumeRefusal.UNKNOWN, "unknown or expired session")
                frames = live.session.resume(resume.token, resume.last_seq)
                self._take_back(live)
                self.hub.store.record(live)
            else:
                live, previous_owner = await self.hub.store.take_over(join)
                try:
                    members = await self.hub.backend.members(live.session.room)
                except BackendUnavailable:
                    members = []
                if live.session.state is SessionState.ENDED:  # moved on again meanwhile
                    conn.close(Close.REPLACED, "resumed on another node", flush=False)
                    return
                frames = live.session.pending()
        except ResumeRefused as exc:
            self.hub.metrics.resume_failures.labels(exc.reason.value).inc()
            conn.send_message(protocol.error(Err.RESUME_FAILED, str(exc)))
            conn.close(Close.SESSION_UNKNOWN, "resume failed")
            return
        self.hub.attach(live, conn)
        # Frames not yet durable (in the ledger) follow from its writer, as they would have anyway.
        frames = [f for f in frames if f.seq <= live.durable_seq]
        welcome = self._welcome(live, members, resumed=True)
        welcome["replayed"] = len(frames)
        conn.send_message(welcome, force=True)
        live.sent_seq = resume.last_seq
        for stamped in frames:
            conn.send(stamped.frame, force=True)
            live.sent_seq = stamped.seq
        self.hub.metrics.resumes.inc()
        self.hub.metrics.replayed.inc(len(frames))
        log.info("session %s resumed, %d messages replayed", live.session.id, len(frames), extra=live.log_ids(self.hub.config.node_id))
        if previous_owner is not None:
            await self.hub.router.adopt(live)  # the media side follows (a later SFU failover)
        if resume.fresh_media:
            await self.hub.router.fresh(live)
        if live.reconnecting_announced or previous_owner not in (None, self.hub.config.node_id):
            live.reconnecting_announced = False
            await self.hub.departures.broadcast(live, {"type": "peer-resumed", "peer": live.session.peer_id})

    def _take_back(self, live: Live) -> None:
        """A session held here resumes: its old connection (if any) is replaced, its grace ends."""
        old = live.conn
        if old is not None:
            old.close(Close.REPLACED, "replaced by a newer connection", flush=False)
            old.session_id = None
        if live.grace is not None:
            live.grace.cancel()
            live.grace = None
        live.linger = None

    def _welcome(self, live: Live, peers: list[Member], *, resumed: bool) -> dict[str, Any]:
        s = self.hub.config.heartbeat
        session = live.session
        return {
            "type": "welcome",
            "protocol": protocol.PROTOCOL_VERSION,
            "session": session.id,
            "resume_token": session.token,
            "peer": session.peer_id,
            "room": session.room,
            "node": self.hub.config.node_id,
            "peers": [protocol.peer_info(m.peer_id, m.name) for m in peers if m.peer_id != session.peer_id],
            "ice_servers": self._ice_servers(session.peer_id),
            "heartbeat": {"interval_ms": round(s.interval * 1000), "timeout_ms": round(s.timeout * 1000)},
            "resumed": resumed,
            "last_cseq": session.last_cseq,
        }

