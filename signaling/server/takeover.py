"""Cross-node takeover (cluster only): a session resumes on a node that did not hold it, the node
that held it lets it go, a dead node's members are reaped, a node reaped while it was away is
fenced. The ledger side is in Redis (``signaling.cluster.ledger``); this is the node's side.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any

from signaling.backend import BackendUnavailable
from signaling.cluster.ledger import SessionLedger, Taken, token_hash
from signaling.core import protocol
from signaling.core.codes import Close, Err
from signaling.core.protocol import Join
from signaling.core.session import Session, Stamped
from signaling.server.departure import until_done
from signaling.server.live import Live

if TYPE_CHECKING:
    from signaling.server.hub import Hub
    from signaling.server.ledger_store import LedgerStore

log = logging.getLogger(__name__)


class Takeover:
    def __init__(self, hub: Hub, store: LedgerStore) -> None:
        self.hub = hub
        self.store = store
        #: Resumes from another node in flight, and what arrived meanwhile for peers this node
        #: does not hold yet (one of them may be the peer being taken over).
        self._takes = 0
        self._unclaimed: list[tuple[str, dict[str, Any], str]] = []

    async def take(self, join: Join, ledger: SessionLedger) -> tuple[Live, str]:
        """Take over in Redis a session another node held (it died, or the client came here),
        then stamp what that node received and never stamped. Deliveries for peers not held here
        wait in ``_unclaimed`` meanwhile. Raises ``ResumeRefused``."""
        resume = join.resume
        assert resume is not None
        self._takes += 1
        try:
            taken = await ledger.take(resume.session, join.room, resume.token, resume.last_seq)
            live = self._adopt(resume.session, resume.token, resume.last_seq, taken)
            live.token_hash = token_hash(resume.token)
            # Before anything else can be stamped for this peer: first what the previous owner
            # received and never stamped, then what came here while the take was in flight.
            for message in taken.pending:
                self.hub.emit(live, message)
            peer = live.session.peer_id
            for _peer, message, source in [u for u in self._unclaimed if u[0] == peer]:
                self.hub.emit(live, message, source)
        finally:
            self._takes -= 1
            if not self._takes:
                self._unclaimed.clear()
        log.info("session %s taken over from node %s, %d pending", live.session.id, taken.previous_owner,
                 len(taken.pending), extra=live.log_ids(self.hub.config.node_id))
        return live, taken.previous_owner

    def unclaimed(self, peer_id: str, message: dict[str, Any], source: str) -> None:
        if self._takes:
            self._unclaimed.append((peer_id, message, source))

    def _adopt(self, session_id: str, token: str, last_seq: int, taken: Taken) -> Live:
        meta = taken.meta
        cfg = self.hub.config.session
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
        self.hub.table.add(live)
        self.hub.backend.adopt(live.member(self.hub.config.node_id))
        return live

    def moved(self, live: Live) -> None:
        """The session resumed on another node: let it go here without ending it."""
        session = live.session
        if self.hub.table.by_id.get(session.id) is not live:
            return
        log.info("session %s moved to another node", session.id, extra=live.log_ids(self.hub.config.node_id))
        conn, live.conn = live.conn, None
        if conn is not None:
            conn.close(Close.REPLACED, "resumed on another node", flush=False)
            conn.session_id = None
        if self.hub.table.mark_ended(live):
            self.hub.backend.forget(session.peer_id)

    async def control(self, fields: dict[str, str]) -> None:
        """A control entry of this node's inbox, or ``reaped`` from the backend."""
        if fields.get("c") == "moved":
            live = self.hub.table.by_id.get(fields.get("s", ""))
            if live is not None:
                self.moved(live)
        elif fields.get("c") == "reaped":
            self.fence(fields.get("peers", "").split())

    def fence(self, peers: list[str]) -> None:
        """The cluster reaped this node while it was stalled or cut off: these members are gone
        and their rooms were told ``peer-left {reason: node-lost}``. End their sessions here too
        (4011: the clients rejoin), so nothing is delivered as if nothing had happened."""
        hub = self.hub
        for peer in peers:
            live = hub.table.by_peer.get(peer)
            if live is None:
                continue
            session = live.session
            log.error("session %s ended: this node was reaped while it was away", session.id,
                      extra=live.log_ids(hub.config.node_id))
            conn = live.conn
            if conn is not None:
                why = "this node was cut off from the cluster and its sessions ended; rejoin"
                conn.send_message(protocol.error(Err.INTERNAL, why), force=True)
                conn.close(Close.SESSION_UNKNOWN, "node-lost")
            if not hub.table.mark_ended(live):
                continue
            self.store.drop(session.id)
            if hub.webhooks is not None:
                hub.webhooks.participant_left(session.room, peer=session.peer_id, name=session.name, session=session.id,
                                              reason="node-lost", identity=live.identity)
            if hub.media is not None:
                hub.tasks.spawn(hub.router.call(hub.media.leave(session.room, session.peer_id)),
                                name=f"fence:{session.id}")

    async def reaper(self, interval: float) -> None:
        """Members of nodes that died are reported ``peer-left`` once, after the grace period (their
        clients may resume elsewhere first); this node's load (rooms it holds) goes into the
        registry's next heartbeat, and its sessions' ledger entries are kept alive."""
        hub = self.hub
        loop = asyncio.get_running_loop()
        next_refresh = loop.time()
        while True:
            await asyncio.sleep(interval)
            if hub.registry is not None and hub.registry.info is not None:
                hub.registry.update(load=len(hub.table.rooms))
            try:
                if loop.time() >= next_refresh:
                    ledger = self.store.ledger
                    next_refresh = loop.time() + ledger.ttl / 3
                    await ledger.refresh(list(hub.table.by_id))
                gone = await hub.backend.reap(hub.config.session.grace_period)
            except BackendUnavailable:
                continue
            for member in gone:
                # Only this call removed them: the room must hear it, however long Redis is away.
                await until_done(functools.partial(hub.departures.tell_left, member, "node-lost"), "peer-left node-lost")
