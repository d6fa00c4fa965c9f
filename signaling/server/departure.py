"""How sessions leave this node: the grace period of a detached session, the end of a session
(once: leave the room, tell the others, webhooks, release media), the jobs that finish an end
through a Redis outage, a drain (every client sent elsewhere) and the shutdown's end of every
session under one deadline. Shared by the hub and cross-node takeover (the reaper's ``peer-left
{reason: node-lost}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from signaling.backend import BackendUnavailable, Member
from signaling.core import protocol
from signaling.core.backoff import Backoff
from signaling.core.codes import Close, Err, ErrorCode
from signaling.core.session import SessionState
from signaling.runtime.tasks import OwnerKind
from signaling.server.live import Live

if TYPE_CHECKING:
    from signaling.server.connection import Connection
    from signaling.server.hub import Hub

log = logging.getLogger(__name__)


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


async def until_done(step: Callable[[], Awaitable[None]], what: str) -> None:
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


class Departures:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def drain(self, deadline: float, connections: set[Connection]) -> None:
        """Tell every client to reconnect elsewhere (``reconnect`` + 1001), wait up to
        ``deadline`` s for the connections to close. In a cluster also wait (same deadline) until
        every session has resumed on another node: what is still here when the node closes ends
        (its client rejoins)."""
        hub = self.hub
        until = asyncio.get_running_loop().time() + deadline
        if hub.registry is not None:
            try:
                await hub.registry.set_draining()
            except BackendUnavailable:
                log.warning("drain: could not mark this node draining in the registry")
        attached = [live for live in hub.table.by_id.values() if live.conn is not None]
        for live in attached:
            hub.emit(live, protocol.reconnect("resume", hub.config.drain_reconnect_delay_ms))
        await hub.store.flushed()
        for live in attached:
            if live.conn is not None:
                live.conn.close(Close.GOING_AWAY, "draining")
        try:
            async with asyncio.timeout_at(until):
                await asyncio.gather(*(c.done.wait() for c in list(connections)))
        except TimeoutError:
            log.warning("drain: %d connections still open after %.1fs", len(connections), deadline)
        if hub.backend.clustered and hub.table.by_id:
            try:
                async with asyncio.timeout_at(until):
                    while hub.table.by_id:
                        hub.table.gone.clear()
                        await hub.table.gone.wait()
                log.info("drain: every session resumed on another node")
            except TimeoutError:
                log.warning("drain: %d session(s) not resumed on another node after %.1fs; they end",
                            len(hub.table), deadline)

    async def end_all(self, deadline: float) -> None:
        """Shutdown: end every session at once, by ``deadline`` (loop time). A stalled Redis costs
        one timeout in all, not one per session; what is left at the deadline is abandoned with a
        warning (the members expire with this node: the reaper of another node removes them)."""
        sessions = list(self.hub.table.by_id.values())
        ended = 0

        async def end(live: Live) -> None:
            nonlocal ended
            try:
                await self.end(live, "shutdown", notify=False, patient=False)
            except BackendUnavailable as exc:
                log.warning("shutdown: could not remove %s: %s", live.session.peer_id, exc)
            ended += 1

        try:
            async with asyncio.timeout_at(deadline):
                results = await asyncio.gather(*(end(live) for live in sessions), return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    log.error("shutdown: ending a session failed", exc_info=result)
        except TimeoutError:
            log.warning("shutdown: deadline passed with %d of %d sessions not ended; their members expire "
                        "with this node", len(sessions) - ended, len(sessions))

    def _ids(self, live: Live) -> dict[str, str]:
        return live.log_ids(self.hub.config.node_id)

    async def broadcast(self, live: Live, message: dict[str, Any]) -> None:
        backend = self.hub.backend
        for other in await backend.members(live.session.room):
            if other.peer_id != live.session.peer_id:
                await backend.send(other.peer_id, message)

    async def tell_left(self, member: Member, reason: str, others: list[Member] | None = None) -> None:
        """``peer-left`` to every other member of ``member``'s room (read now unless given).
        Safe to repeat: each (leaver, recipient) pair is delivered once, whoever sends it."""
        backend = self.hub.backend
        if others is None:
            others = await backend.members(member.room)
        message = {"type": "peer-left", "peer": member.peer_id, "reason": reason}
        for other in others:
            if other.peer_id != member.peer_id:
                await backend.send(other.peer_id, message, once=f"peer-left:{member.peer_id}:{other.peer_id}")

    async def grace(self, live: Live) -> None:
        """A detached session: ``peer-reconnecting`` after a while, the end after the grace
        period, unless it resumes first (which cancels this task)."""
        if live.linger is not None:
            # It said it left: nobody hears "reconnecting"; it is gone unless it resumes now.
            await asyncio.sleep(min(live.linger, self.hub.config.session.grace_period))
            live.grace = None
            await self.end(live, "left")
            return
        cfg = self.hub.config.session
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.grace_period
        me = asyncio.current_task()

        def current() -> bool:
            # A resume cancels this task, but redis-py can swallow a cancellation that races a
            # completing call (Python 3.11): check, rather than end a session that came back.
            return live.grace is me and live.session.state is SessionState.DETACHED

        async def announce() -> None:
            if current():
                await self.broadcast(live, {"type": "peer-reconnecting", "peer": live.session.peer_id})

        await asyncio.sleep(min(cfg.reconnecting_notice_after, cfg.grace_period))
        if not current():
            return
        live.reconnecting_announced = True
        # Through a Redis outage the notice keeps trying, until the grace period is over.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await until_done(announce, "peer-reconnecting")
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        if not current():
            return
        live.grace = None
        await self.end(live, "timeout")

    async def end(self, live: Live, reason: str, *, notify: bool = True, patient: bool = True) -> None:
        """End a session once: leave the room, tell the others, release media. ``patient``: if
        Redis fails, a task finishes the job once it is back (else the error propagates)."""
        if self.hub.table.mark_ended(live):
            await self._release(live, reason, notify=notify, patient=patient)

    def lose(self, live: Live, why: str, *, code: ErrorCode = Err.REPLAY_OVERFLOW, reason: str = "replay-overflow") -> None:
        """The session cannot go on (its replay buffer overflowed, or a frame of it could not be
        stored): it cannot be resumed either. Say so, end it; other sessions are not touched."""
        hub = self.hub
        if code is Err.REPLAY_OVERFLOW:
            hub.metrics.replay_overflows.inc()
            log.warning("session %s lost: %s", live.session.id, why, extra=self._ids(live))
        else:
            log.error("session %s lost: %s", live.session.id, why, extra=self._ids(live))
        conn = live.conn
        if conn is not None:
            conn.send_message(protocol.error(code, why), force=True)
            conn.close(Close.SESSION_UNKNOWN, reason)
        if hub.table.mark_ended(live):
            hub.tasks.spawn(self._release(live, reason, notify=True), name=f"lose:{live.session.id}",
                            owner=f"session:{live.session.id}", kind=OwnerKind.SESSION)

    async def _release(self, live: Live, reason: str, *, notify: bool, patient: bool = True) -> None:
        session = live.session
        self.hub.store.drop(session.id)
        job = _Release(live, reason, notify)
        try:
            await self._release_step(job)
        except BackendUnavailable as exc:
            if not patient:
                raise
            log.warning("peer %s left room %s (%s) while redis is unavailable (%s): finishing once it is back",
                        session.peer_id, session.room, reason, exc, extra=self._ids(live))
            try:
                self.hub.tasks.spawn(until_done(functools.partial(self._release_step, job), "release"),
                                     name=f"release:{session.id}")
            except RuntimeError:
                log.warning("shutting down: peer %s is left to the reaper", session.peer_id)

    async def _release_step(self, job: _Release) -> None:
        """One attempt at the rest of a release; repeatable until it completes."""
        hub = self.hub
        live, session = job.live, job.live.session
        if not job.removed:
            try:
                remaining = await hub.backend.remove_member(session.room, session.peer_id)
            except BackendUnavailable:
                job.uncertain = True
                raise
            if remaining is None and job.uncertain:
                # An earlier attempt may have landed (or a resync removed it): it was ours.
                remaining = [m for m in await hub.backend.members(session.room) if m.peer_id != session.peer_id]
            job.removed, job.remaining = True, remaining
            if hub.webhooks is not None and remaining is not None:
                hub.webhooks.participant_left(
                    session.room, peer=session.peer_id, name=session.name, session=session.id,
                    reason=job.reason, identity=live.identity,
                )
                if not remaining:
                    hub.webhooks.room_finished(session.room)
        if job.notify and job.remaining:
            await self.tell_left(live.member(hub.config.node_id), job.reason, job.remaining)
            job.remaining = None
        if not job.media_left:
            job.media_left = True
            await hub.router.leave(live)
        log.info("peer %s left room %s (%s)", session.peer_id, session.room, job.reason, extra=self._ids(live))
