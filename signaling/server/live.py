"""The sessions one node holds: each :class:`Live` (a session with its runtime attachments) and
the table of them (by session id, by peer id, sessions per room). No I/O; the hub and its parts
(the session store, cross-node takeover, the media router) share this table.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from signaling.backend.base import Member
from signaling.core.auth import DEV_IDENTITY_GRANTS
from signaling.core.codes import Err, ErrorCode
from signaling.core.errors import PeerError
from signaling.core.policy import Allowance
from signaling.core.session import Session, SessionState

if TYPE_CHECKING:
    from signaling.server.connection import Connection


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
    #: What the session may still send (candidates, data rate): see :mod:`signaling.core.policy`.
    allowance: Allowance = field(default_factory=Allowance)
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
    #: Seconds a session that said ``leave {linger_ms}`` stays resumable (a page reloading).
    linger: float | None = None
    #: A WHIP publisher or WHEP player: in the room, never on a WebSocket; nothing is stamped
    #: or buffered for it (its media signaling is HTTP, see signaling.server.whip_http).
    headless: bool = False

    def member(self, node_id: str) -> Member:
        s = self.session
        return Member(s.peer_id, s.name, s.room, node_id)

    def log_ids(self, node_id: str) -> dict[str, str]:
        """Structured fields for log records (kept by ``--log-format json``)."""
        s = self.session
        return {"session": s.id, "peer": s.peer_id, "room": s.room, "node": node_id}


class JoinRefused(PeerError):
    """A join this node refuses: ``reason`` is draining, node-full or room-full (``error`` the
    protocol error a WebSocket client gets)."""

    def __init__(self, reason: str, message: str, error: ErrorCode) -> None:
        super().__init__(message)
        self.reason = reason
        self.error = error


#: The name WHIP/WHEP know it by (a headless participant's refused join).
HeadlessRefused = JoinRefused


def refused(reason: str, message: str) -> JoinRefused:
    errors = {"draining": Err.SHUTTING_DOWN, "node-full": Err.NODE_FULL, "room-full": Err.ROOM_FULL}
    return JoinRefused(reason, message, errors[reason])


class Sessions:
    """The sessions of this node: by session id, by peer id, and how many per room."""

    def __init__(self) -> None:
        self.by_id: dict[str, Live] = {}
        self.by_peer: dict[str, Live] = {}
        #: Sessions per room on this node (for the rooms-per-node limit).
        self.rooms: dict[str, int] = {}
        #: Set whenever a session leaves this node (ended or moved): what a drain waits on.
        self.gone = asyncio.Event()

    def __len__(self) -> int:
        return len(self.by_id)

    def add(self, live: Live) -> None:
        s = live.session
        self.by_id[s.id] = live
        self.by_peer[s.peer_id] = live
        self.rooms[s.room] = self.rooms.get(s.room, 0) + 1

    def mark_ended(self, live: Live) -> bool:
        """The synchronous half of ending: from here on nothing is stamped or delivered.
        False: it had ended already."""
        session = live.session
        if session.state is SessionState.ENDED:
            return False
        session.state = SessionState.ENDED
        grace, live.grace = live.grace, None
        if grace is not None and grace is not asyncio.current_task():
            grace.cancel()
        self.by_id.pop(session.id, None)
        self.by_peer.pop(session.peer_id, None)
        self.gone.set()
        left = self.rooms.get(session.room, 0) - 1
        if left > 0:
            self.rooms[session.room] = left
        else:
            self.rooms.pop(session.room, None)
        return True

    def attached(self) -> int:
        return sum(1 for live in self.by_id.values() if live.conn is not None)

