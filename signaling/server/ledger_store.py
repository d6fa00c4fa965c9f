"""The cluster's session store: every frame goes to the session ledger in Redis before it
reaches the client, so a resume on another node misses nothing (docs/architecture.md, "Cross-node
resume"). Loaded only by cluster nodes (the hub imports it when its backend is clustered).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from signaling.cluster.durable import Written
from signaling.cluster.ledger import SessionLedger, token_hash
from signaling.core import protocol
from signaling.core.codes import Err
from signaling.core.protocol import Join
from signaling.core.session import Stamped
from signaling.server.live import Live
from signaling.server.takeover import Takeover

if TYPE_CHECKING:
    from signaling.runtime.tasks import TaskRegistry
    from signaling.server.hub import Hub

log = logging.getLogger(__name__)


class LedgerStore:
    """Frames are shown once written; a session held elsewhere is taken over (:class:`Takeover`)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._ledger: SessionLedger | None = None
        self.takeover = Takeover(hub, self)

    @property
    def ledger(self) -> SessionLedger:
        assert self._ledger is not None, "the backend has not started"
        return self._ledger

    def start(self, tasks: TaskRegistry) -> None:
        self._ledger = self.hub.backend.session_ledger()
        tasks.spawn(self.takeover.reaper(self.hub.config.cluster.reap_interval), name="reaper")

    def joined(self, live: Live) -> None:
        session = live.session
        live.token_hash = token_hash(session.token)
        live.meta = protocol.encode({
            "peer": session.peer_id, "room": session.room, "name": session.name,
            "grants": sorted(live.grants), "identity": live.identity, "subscribe": live.subscribe,
        })

    def stamped(self, live: Live, stamped: Stamped, source: str) -> None:
        session = live.session
        queued = self.ledger.frames(
            session.id, meta=live.meta, tok=live.token_hash, frames=[(stamped.seq, stamped.frame)],
            last_cseq=live.settled_cseq, acked=session.acked_seq, src=source,
            done=lambda written: self._written(live, stamped, written),
        )
        if not queued:
            self.hub.lose(live, "session ledger queue full")

    def _written(self, live: Live, stamped: Stamped, written: Written) -> None:
        """The frame is safe to show the client (OK), another node owns the session (FENCED), or
        the frame can never be stored (FAILED: the session's stream has a hole)."""
        if written is Written.FENCED:
            self.moved(live)
        elif written is Written.FAILED:
            self.hub.lose(live, f"frame {stamped.seq} could not be stored", code=Err.INTERNAL, reason="internal-error")
        else:
            self.hub.show(live, stamped)

    def record(self, live: Live) -> None:
        self.ledger.frames(live.session.id, meta=live.meta, tok=live.token_hash, frames=[],
                           last_cseq=live.settled_cseq, acked=live.session.acked_seq)

    def drop(self, session_id: str) -> None:
        self.ledger.drop(session_id)

    async def flushed(self) -> None:
        timeout = self.hub.config.limits.close_timeout
        try:
            async with asyncio.timeout(timeout):
                await self.ledger.flushed()
        except TimeoutError:
            log.warning("session ledger did not flush within %.1fs", timeout)

    async def take_over(self, join: Join) -> tuple[Live, str]:
        return await self.takeover.take(join, self.ledger)

    def unclaimed(self, peer_id: str, message: dict[str, Any], source: str) -> None:
        self.takeover.unclaimed(peer_id, message, source)

    def moved(self, live: Live) -> None:
        self.takeover.moved(live)

    async def control(self, fields: dict[str, str]) -> None:
        await self.takeover.control(fields)
