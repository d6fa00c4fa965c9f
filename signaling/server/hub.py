"""The hub: rooms and routing on one node.

It binds connections to sessions, stamps every session message with its ``seq`` (through
:class:`~signaling.core.session.Session`), relays ``signal`` and ``data`` between peers of one room
only, and hands the rest to its parts: the session store decides when a stamped frame reaches the
client and resumes sessions it does not hold (:mod:`signaling.server.store`; a cluster's ledger and
cross-node takeover: ``signaling.server.ledger_store``, ``signaling.server.takeover``), :mod:`signaling.core.policy`
checks what a session may send, :mod:`signaling.server.media_router` talks to the SFU, and
:mod:`signaling.server.departure` runs grace periods and ends sessions. Membership and delivery to other
peers go through the :class:`~signaling.backend.Backend`, so the same hub works alone in memory
or as one node of a Redis cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from signaling.backend import Backend, BackendUnavailable, SessionMoved
from signaling.backend.media import MediaPort
from signaling.core import protocol
from signaling.core.codes import Close, Err, ErrorCode
from signaling.core.config import ServerConfig
from signaling.core.heartbeat import HeartbeatPolicy
from signaling.core.policy import refusal
from signaling.core.protocol import (
    Ack,
    ClientMessage,
    Data,
    Join,
    Leave,
    Pong,
    ProtocolError,
    Signal,
)
from signaling.core.session import AckError, ReplayOverflow, SessionState, Stamped
from signaling.core.sfu_rpc import VIA
from signaling.runtime.leakwatch import LeakWatch
from signaling.runtime.metrics import Metrics
from signaling.runtime.tasks import OwnerKind, TaskRegistry, adopt
from signaling.server.admission import Admission
from signaling.server.connection import Connection
from signaling.server.departure import Departures
from signaling.server.live import Live, Sessions
from signaling.server.media_router import MediaRouter
from signaling.server.store import ImmediateStore, SessionStore
from signaling.server.webhooks import WebhookSender

if TYPE_CHECKING:  # the registry (and redis-py) is loaded only by cluster nodes
    from signaling.cluster.registry import NodeRegistry

log = logging.getLogger(__name__)

#: A busy client gets its messages confirmed after this many, not only on the next ping.
CONFIRM_EVERY = 32

#: Builds the ``ice_servers`` of a welcome for a peer id (fresh TURN credentials each time).
IceServers = Callable[[str], list[dict[str, Any]]]


class Hub:
    def __init__(
        self, config: ServerConfig, backend: Backend, metrics: Metrics, *, media: MediaPort | None = None,
        ice_servers: IceServers | None = None, webhooks: WebhookSender | None = None,
        registry: NodeRegistry | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.metrics = metrics
        self.media = media
        self.webhooks = webhooks
        #: The cluster's node registry (with Redis): this node is listed there while it lives.
        self.registry = registry
        #: The sessions this node holds.
        self.table = Sessions()
        self._connections: set[Connection] = set()
        self.tasks = TaskRegistry("hub", OwnerKind.HUB)
        #: The task-leak alarm; its last alert is shown by ``GET /admin/debug/tasks``.
        self.leaks = LeakWatch(lambda: self.table.by_id.keys(), config.session.leak_sample_interval)
        self.router = MediaRouter(self)
        self.departures = Departures(self)
        self.admission = Admission(self, ice_servers or (lambda _peer: []))
        self.store: SessionStore = _store(self)
        self.draining = False
        #: Cluster: whether an SFU node is the one this node uses for a room now (see
        #: :data:`signaling.core.sfu_rpc.VIA`); None: every SFU message is delivered.
        self.media_current: Callable[[str, str], bool] | None = None
        # Counted at scrape time, not on every join: a sum per join would be quadratic.
        metrics.sessions.labels("attached").set_function(self.table.attached)
        metrics.sessions.labels("detached").set_function(lambda: len(self.table) - self.table.attached())
        metrics.rooms.set_function(lambda: len(self.table.rooms))

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.backend.control = self.store.control
        await self.backend.start(self.config.node_id, self.deliver)
        self.store.start(self.tasks)
        if self.registry is not None:
            from signaling.cluster.registry import NodeInfo

            cfg = self.config
            await self.registry.register(
                NodeInfo(id=cfg.node_id, kind="signaling", address=f"http://{cfg.host}:{cfg.port}",
                         capacity=cfg.security.max_rooms)
            )
        if self.webhooks is not None:
            self.webhooks.start()
        if self.leaks.interval > 0:
            self.tasks.spawn(self.leaks.run(), name="leak-watch")

    async def close(self) -> None:
        """Close every connection (1001) and stop every task; sessions die with the node.

        Connections, then sessions (concurrently) are ended under one deadline
        (``limits.shutdown_timeout``); what is left when it passes is abandoned with a warning
        (the members expire with this node: the reaper of another node removes them).
        """
        deadline = asyncio.get_running_loop().time() + self.config.limits.shutdown_timeout
        for conn in list(self._connections):
            conn.close(Close.GOING_AWAY, "server shutting down", flush=False)
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.gather(*(c.done.wait() for c in list(self._connections)))
        except TimeoutError:
            log.warning("shutdown: %d connections still closing at the deadline", len(self._connections))
        await self.tasks.close()
        await self.departures.end_all(deadline)
        if self.registry is not None:
            await self.registry.close()
        if self.media is not None:
            await self.media.close()
        if self.webhooks is not None:
            await self.webhooks.close(self.config.limits.close_timeout)
        await self.backend.close()

    async def drain(self, deadline: float) -> None:
        """Stop taking sessions, tell every client to reconnect elsewhere, wait up to ``deadline``
        s (:meth:`Departures.drain`)."""
        self.draining = True
        await self.departures.drain(deadline, self._connections)

    async def run_connection(self, conn: Connection) -> None:
        self._connections.add(conn)
        if (handler := asyncio.current_task()) is not None:
            adopt(handler, OwnerKind.CONNECTION, f"connection:{conn.remote}")
        try:
            await conn.run(self)
        finally:
            self._connections.discard(conn)
            self._detach(conn)

    # -- introspection and operators (admin, metrics, tests) ----------------------------------

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def session_count(self) -> int:
        return len(self.table)

    @property
    def room_count(self) -> int:
        return len(self.table.rooms)

    @property
    def task_count(self) -> int:
        return len(self.tasks)

    def sessions(self) -> list[Live]:
        return list(self.table.by_id.values())

    def has_peer(self, peer_id: str) -> bool:
        return peer_id in self.table.by_peer

    def disconnect(self, session_id: str) -> bool:
        """Drop a session's socket but keep the session: the client resumes (ops, tests)."""
        live = self.table.by_id.get(session_id)
        if live is None or live.conn is None:
            return False
        live.conn.close(Close.GOING_AWAY, "disconnected by operator", flush=False)
        return True

    async def kick(self, peer_id: str, reason: str = "kicked") -> bool:
        """End a participant's session; its client sees 4006 and does not reconnect."""
        live = self.table.by_peer.get(peer_id)
        if live is None:
            return False
        if live.conn is not None:
            self.emit(live, protocol.error(Err.FORBIDDEN, f"kicked: {reason}"))
            await self.store.flushed()
        if live.conn is not None:
            live.conn.close(Close.KICKED, reason[:100])
        await self.departures.end(live, "kicked")
        return True

    async def mute(self, peer_id: str, track_id: str, muted: bool) -> bool:
        """Operator mute of a published track (the SFU stops forwarding it). False: no such peer."""
        live = self.table.by_peer.get(peer_id)
        if live is None or self.media is None:
            return False
        await self.media.mute(live.session.room, peer_id, track_id, muted)
        return True

    async def close_room(self, room: str) -> int:
        """Kick every participant of ``room`` held by this node."""
        peers = [live.session.peer_id for live in self.table.by_id.values() if live.session.room == room]
        for peer in peers:
            await self.kick(peer, "room closed")
        return len(peers)

    # -- inbound --------------------------------------------------------------------------------

    async def on_error(self, conn: Connection, error: ProtocolError) -> None:
        self.metrics.errors.labels(error.error.code).inc()
        message = protocol.error(error.error, error.message, cseq=error.cseq, retry_after_ms=error.retry_after_ms)
        live = self._live(conn)
        if live is not None:
            self.emit(live, message)
        else:
            conn.send_message(message)

    async def on_message(self, conn: Connection, message: ClientMessage) -> None:
        live = self._live(conn)
        if live is None:
            if isinstance(message, Join):
                await self.admission.join(conn, message)
            else:
                await self.on_error(conn, ProtocolError(Err.NOT_JOINED, "send join first"))
            return
        session = live.session
        match message:
            case Ack(seq=seq):
                try:
                    if session.ack(seq):
                        self.store.record(live)
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
                await self.departures.end(live, "left")
                conn.close(Close.NORMAL, "left")
            case _:
                await self._sequenced(live, conn, message)

    async def _sequenced(self, live: Live, conn: Connection, message: protocol.Sequenced) -> None:
        """A client request with a ``cseq``: once, in order, confirmed once it is done."""
        session = live.session
        previous = session.last_cseq
        if not session.accept_cseq(message.cseq):
            self.metrics.duplicates.inc()
            return
        try:
            error = refusal(message, grants=live.grants, peer_id=session.peer_id, allowance=live.allowance,
                            limits=self.config.security, now=time.monotonic())
            if error is None and isinstance(message, Signal | Data):
                error = await self._relay(live, message)
            elif error is None:
                error = await self.router.request(live, message)
            if error is not None:
                await self.on_error(conn, error)
        except SessionMoved:
            self.store.moved(live)
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

    async def _relay(self, live: Live, message: Signal | Data) -> ProtocolError | None:
        """Deliver through the backend: each recipient's session stamps it (seq, replay, once).
        The room check happens with the delivery (one Redis round trip in a cluster); a peer of
        another room is reported exactly like one that does not exist. A ``data`` fan-out records
        the sender's cseq with its last delivery, so a node dying in the middle of it can make a
        resent message reach the first recipients twice, never lose it."""
        session = live.session
        if isinstance(message, Signal):
            if message.to == session.peer_id:
                return ProtocolError(Err.SELF_TARGET, "cannot signal yourself", cseq=message.cseq)
            targets = [message.to]
            frame: dict[str, Any] = {"type": "signal", "from": session.peer_id, "data": message.data}
        else:
            frame = {"type": "data", "from": session.peer_id, "topic": message.topic, "payload": message.payload}
            if message.to is None:
                targets = [m.peer_id for m in await self.backend.members(session.room) if m.peer_id != session.peer_id]
            else:
                targets = frame["to"] = list(message.to)
        missing = []
        for index, peer in enumerate(targets):
            origin = (session.id, message.cseq) if index == len(targets) - 1 else None
            if not await self.backend.send(peer, frame, origin=origin, room=session.room):
                missing.append(peer)
        if missing:
            return ProtocolError(Err.UNKNOWN_PEER, f"no peer {', '.join(missing)} in this room", cseq=message.cseq)
        return None

    # -- sessions ------------------------------------------------------------------------------

    async def end_headless(self, peer_id: str, reason: str = "left") -> bool:
        """End a headless participant (DELETE of its WHIP/WHEP resource)."""
        live = self.table.by_peer.get(peer_id)
        if live is None or not live.headless:
            return False
        await self.departures.end(live, reason)
        return True

    def attach(self, live: Live, conn: Connection) -> None:
        live.conn = conn
        live.session.state = SessionState.ATTACHED
        conn.session_id = live.session.id
        # Pings confirm only settled cseqs: one still being relayed may yet fail (a Redis failover)
        # and must then be resent by the client.
        conn.start_heartbeat(HeartbeatPolicy(self.config.heartbeat), lambda: live.settled_cseq)

    def _live(self, conn: Connection) -> Live | None:
        return self.table.by_id.get(conn.session_id) if conn.session_id is not None else None

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
        live.grace = self.tasks.spawn(self.departures.grace(live), name=f"grace:{live.session.id}",
                                      owner=f"session:{live.session.id}", kind=OwnerKind.SESSION)

    # -- outbound -------------------------------------------------------------------------------

    async def deliver(self, peer_id: str, message: dict[str, Any], source: str = "") -> None:
        """Backend delivery: a message for a peer whose session lives on this node. ``source``
        is its inbox entry id (cluster), recorded with the frame in the ledger."""
        live = self.table.by_peer.get(peer_id)
        via = message.get(VIA)
        if via is not None:
            message = {k: v for k, v in message.items() if k != VIA}
            if live is not None and self.media_current is not None and not self.media_current(live.session.room, str(via)):
                log.info("%s for %s from SFU node %s dropped: the room moved to another SFU node",
                         message.get("type"), peer_id, via)
                return
        if live is not None:
            self.emit(live, message, source)
        else:
            self.store.unclaimed(peer_id, message, source)

    def emit(self, live: Live, message: dict[str, Any], source: str = "") -> None:
        """Stamp a session message; the store shows it (:meth:`show`) when it may reach the
        client, and it waits for replay if the session is detached."""
        session = live.session
        if session.state is SessionState.ENDED or live.headless:
            return
        try:
            stamped = session.stamp(message)
        except ReplayOverflow as exc:
            self.lose(live, str(exc))
            return
        except protocol.StrictJSONError as exc:
            # Nothing unencodable gets in (protocol.parse), so this is a bug: that one message
            # is dropped with an error log, before it reaches the replay buffer or the ledger.
            log.error("message %s for %s not sent, not strict JSON: %s", message.get("type"), session.peer_id, exc,
                      extra=self._log_ids(live))
            return
        self.metrics.message_out(message["type"])
        self.store.stamped(live, stamped, source)

    def show(self, live: Live, stamped: Stamped) -> None:
        """A stamped frame may reach the client: send it if attached (once, in order)."""
        live.durable_seq = max(live.durable_seq, stamped.seq)
        conn = live.conn
        if conn is not None and stamped.seq > live.sent_seq and live.session.state is not SessionState.ENDED:
            conn.send(stamped.frame)
            live.sent_seq = stamped.seq

    def lose(self, live: Live, why: str, *, code: ErrorCode = Err.REPLAY_OVERFLOW, reason: str = "replay-overflow") -> None:
        """The session cannot go on: see :meth:`Departures.lose`."""
        self.departures.lose(live, why, code=code, reason=reason)

    def _log_ids(self, live: Live) -> dict[str, str]:
        return live.log_ids(self.config.node_id)


def _store(hub: Hub) -> SessionStore:
    """The session store the backend calls for: a cluster's ledger (imported only there)."""
    if not hub.backend.clustered:
        return ImmediateStore(hub)
    from signaling.server.ledger_store import LedgerStore

    return LedgerStore(hub)
