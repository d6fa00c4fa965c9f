"""The SFU as a signaling node of a cluster sees it: a :class:`~signaling.backend.media.MediaPort` whose
calls run on the SFU node that holds the room.

Every call places the room (``NodeRegistry.place``: atomic, sticky while the node lives,
least-loaded otherwise), appends a :class:`~signaling.core.sfu_rpc.Request` to that SFU node's request
stream and waits, under one deadline, for the :class:`~signaling.core.sfu_rpc.Reply` on this node's
reply stream (read by one owned task). What the SFU says to clients on its own (subscriber
offers, track events) does not come back this way: the SFU node sends it to the peer through the
cluster backend (``PeerSender``), and the hub that holds the peer stamps and delivers it.

Failover. A watcher task checks, every ``failover_interval``, the rooms this node has
participants in. When a room's SFU node is gone from the registry (its key expired ``ttl`` after
its last heartbeat, or it deregistered), ``place`` puts the room on another node; the watcher then
tells each local participant of the room ``reconnect {mode: "rejoin", scope: "media"}`` and joins
it on the new node (with its ``subscribe`` flag). Clients close both peer connections and publish
again; the new SFU offers subscribers the tracks as they reappear. The signaling session is not
touched. The same check runs before every call, so a call never goes to a node this node knows
is replaced.

Ordering. Requests of one participant must run in order on the SFU node. The hub awaits each
call of a connection before the next, and the per-room lock here is held from the placement
check to the append, so requests reach the SFU node's stream in the order they were made; the
SFU node runs them in stream order per participant. The lock is *not* held while waiting for the
answer: a dead SFU node must not stall the room (nor the failover) for a whole deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from signaling.backend import BackendUnavailable
from signaling.backend.media import Emit
from signaling.cluster.connect import make_client
from signaling.cluster.redis_io import StreamReader, append
from signaling.cluster.registry import NodeInfo, NodeKind, NodeRegistry
from signaling.core import protocol
from signaling.core.sfu_rpc import (
    SFU_ERROR,
    SFU_UNAVAILABLE,
    Op,
    RemoteMediaError,
    Reply,
    Request,
    RpcFormatError,
    reply_stream,
    request_stream,
)
from signaling.runtime.tasks import OwnerKind, TaskRegistry

log = logging.getLogger(__name__)

#: Answers how many members a room has cluster-wide (``Backend.members``): lets the last leave
#: of a room whose SFU node died release its placement.
RoomMembers = Callable[[str], Awaitable[list[Any]]]


# -- what the port needs from a cluster: placement and a request transport -------------------------


class Placement(Protocol):
    """Room -> SFU node placement, as :class:`RemoteMedia` uses it: :class:`NodeRegistry` in a
    cluster (Redis), :class:`signaling.server.local_rpc.LocalRegistry` for the SFU worker processes of
    one ``switchboard serve --sfu-workers N``. Both choose with ``registry.choose_node``."""

    async def place(self, room: str, *, away_from: str | None = None) -> str | None: ...
    async def placement(self, room: str) -> str | None: ...
    async def nodes(self, kind: NodeKind | None = None) -> list[NodeInfo]: ...
    async def release(self, room: str) -> str | None: ...
    async def close(self, *, deregister: bool = True) -> None: ...


#: Handles one reply entry (``{"m": <Reply JSON>}``).
ReplyHandler = Callable[[dict[str, str]], Awaitable[None]]


class RpcTransport(Protocol):
    """How encoded :class:`~signaling.core.sfu_rpc.Request` s reach an SFU node and encoded
    :class:`~signaling.core.sfu_rpc.Reply` s come back: Redis Streams (:class:`RedisRpc`) or the Unix
    sockets of local SFU workers (:class:`signaling.server.sfu_workers.WorkerPool`)."""

    async def prepare(self, handle: ReplyHandler) -> None:
        """Get ready to deliver replies to ``handle`` (before the first request)."""

    def start_replies(self) -> None:
        """Start delivering replies (after :meth:`prepare`; the transport owns what reads them)."""

    async def stop_replies(self, deadline: float) -> None:
        """Stop delivering replies, within ``deadline`` seconds."""

    async def send(self, node: str, payload: str, *, what: str) -> None:
        """Hand one request to ``node``; :class:`BackendUnavailable` if it cannot be sent. Never
        retried by the caller: a request sent twice would run twice."""

    async def close(self) -> None: ...


class RedisRpc:
    """:class:`RpcTransport` over Redis Streams: one request stream per SFU node, one reply stream
    per signaling node (see :mod:`signaling.core.sfu_rpc`)."""

    def __init__(
        self, url: str, *, node_id: str, key_prefix: str, stream_maxlen: int, stream_ttl: float, op_timeout: float, block: float
    ) -> None:
        self.node_id = node_id
        self.prefix = key_prefix
        self.stream_maxlen = stream_maxlen
        self.stream_ttl = stream_ttl
        self.op_timeout = op_timeout
        self._block = block
        self._redis = make_client(url, op_timeout=op_timeout)
        self._reader_redis = make_client(url, op_timeout=op_timeout, read_timeout=block + op_timeout, max_connections=1)
        self._reader: StreamReader | None = None

    async def prepare(self, handle: ReplyHandler) -> None:
        async def on_entry(_entry_id: str, fields: dict[str, str]) -> None:
            await handle(fields)

        self._reader = StreamReader(
            self._reader_redis, reply_stream(self.prefix, self.node_id), on_entry, block=self._block,
            op_timeout=self.op_timeout, name=f"sfu replies of {self.node_id}",
        )
        try:
            # Position the reader now, so a reply to the first request cannot be skipped.
            await self._reader.sync_position()
        except BackendUnavailable:
            # Read from the start once Redis is back: old replies match no request of this
            # incarnation and are dropped, and none of ours can be skipped.
            self._reader.read_from_start()

    def start_replies(self) -> None:
        assert self._reader is not None, "prepare first"
        self._reader.start()

    async def stop_replies(self, deadline: float) -> None:
        if self._reader is not None:
            await self._reader.close(deadline)

    async def send(self, node: str, payload: str, *, what: str) -> None:
        await append(
            self._redis, request_stream(self.prefix, node), payload,
            maxlen=self.stream_maxlen, ttl=self.stream_ttl, op_timeout=self.op_timeout, what=what,
        )

    async def close(self) -> None:
        await self._reader_redis.aclose()
        await self._redis.aclose()


# -- failover decision (pure) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Move:
    """A room's media goes to another SFU node; what this signaling node has to redo."""

    room: str
    #: The node the room was on (None: it never got one, e.g. no SFU had capacity at join).
    old: str | None
    new: str
    #: Local participants with their ``subscribe`` flag: each is told to redo media and is
    #: joined on ``new``.
    participants: tuple[tuple[str, bool], ...]


def plan_move(room: str, current: str | None, placed: str | None, participants: Mapping[str, bool]) -> Move | None:
    """What to do when the registry places ``room`` on ``placed`` and we last used ``current``.

    Nothing when the placement did not change, or when no node can take the room (``placed`` is
    None: calls fail with ``sfu-unavailable`` until one can, and the move happens then).
    """
    if placed is None or placed == current:
        return None
    return Move(room, current, placed, tuple(participants.items()))


def rooms_to_check(
    rooms: Mapping[str, str | None], live: set[str], retry: Iterable[str] = (), draining: Set[str] = frozenset()
) -> list[str]:
    """Rooms worth a look this tick: their SFU node is not (or no longer) a live SFU node, or is
    draining (its rooms move while it still forwards), or they have participants whose join must
    be retried (``retry``).

    Checking only these keeps a healthy cluster's watcher at one registry read per tick, however
    many rooms the node has.
    """
    return sorted(
        {room for room, node in rooms.items() if node is None or node not in live or node in draining} | set(retry)
    )


# -- the port --------------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Room:
    """What this signaling node knows about one room's media."""

    #: The SFU node this node last sent the room's requests to.
    node: str | None = None
    #: Participants joined through this node -> their ``subscribe`` flag (to join them elsewhere).
    participants: dict[str, bool] = field(default_factory=dict)
    #: Participants whose join on ``node`` failed for want of an answer (``sfu-unavailable``:
    #: Redis or the node was slow): the watcher joins them again and tells them to redo media.
    unjoined: set[str] = field(default_factory=set)
    #: Held from the placement check to the append of a request (see the module docstring).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Coroutines using this entry: it is forgotten only when unused and empty.
    users: int = 0


@dataclass(eq=False, slots=True)
class _Pending:
    id: str
    node: str
    room: str
    future: asyncio.Future[Reply]
    deadline: float


class RemoteMedia:
    """:class:`~signaling.backend.media.MediaPort` over Redis Streams to the cluster's SFU nodes.

    Owns two Redis clients (calls; the reader's blocking connection), a placement-only
    :class:`NodeRegistry` (it never registers: the hub registers the node), a reader task and a
    watcher task. Call :meth:`start` before the first call and :meth:`close` at the end.

    Without a URL it runs over a given ``registry`` and ``transport`` instead (local SFU worker
    processes, :mod:`signaling.server.sfu_workers`): same placement policy, same messages, same failover.
    """

    def __init__(
        self,
        url: str | None,
        *,
        registry: Placement | None = None,
        transport: RpcTransport | None = None,
        node_id: str,
        emit: Emit,
        key_prefix: str = "sb:",
        room_members: RoomMembers | None = None,
        rpc_timeout: float = 10.0,
        failover_interval: float = 1.0,
        stream_maxlen: int = 10_000,
        stream_ttl: float = 300.0,
        heartbeat_interval: float = 2.0,
        node_ttl: float = 6.0,
        op_timeout: float = 2.0,
        block: float = 1.0,
        close_timeout: float = 2.0,
    ) -> None:
        """
        :param emit: the hub's media router's ``emit``: how ``reconnect {scope: media}`` reaches a client.
        :param room_members: cluster-wide membership of a room (``Backend.members``), to release
            the placement of a room that ended while its SFU node was dead.
        :param rpc_timeout: deadline of one call, from the append to the reply.
        :param failover_interval: seconds between two checks of this node's rooms.
        :param stream_maxlen: approximate bound of each stream this node appends to.
        :param stream_ttl: a stream nobody appends to for this long expires.
        :param heartbeat_interval: registry settings, as the nodes use them.
        :param node_ttl: registry settings, as the nodes use them.
        :param op_timeout: deadline of every Redis call.
        :param block: how long one ``XREAD BLOCK`` of the reply reader waits.
        :param close_timeout: how long :meth:`close` waits for its Redis connections to close.
        """
        self.node_id = node_id
        self.prefix = key_prefix
        self.rpc_timeout = rpc_timeout
        self.failover_interval = failover_interval
        self.stream_maxlen = stream_maxlen
        self.stream_ttl = stream_ttl
        self.op_timeout = op_timeout
        self.close_timeout = close_timeout
        self._emit = emit
        self._room_members = room_members
        if url is None:
            if registry is None or transport is None:
                raise ValueError("remote media without a Redis URL needs a registry and a transport")
        else:
            registry = registry or NodeRegistry(
                url, key_prefix=key_prefix, heartbeat_interval=heartbeat_interval, ttl=node_ttl, op_timeout=op_timeout
            )
            transport = transport or RedisRpc(
                url, node_id=node_id, key_prefix=key_prefix, stream_maxlen=stream_maxlen, stream_ttl=stream_ttl,
                op_timeout=op_timeout, block=block,
            )
        self._registry: Placement = registry
        self._transport: RpcTransport = transport
        self._tasks = TaskRegistry("remote-media", OwnerKind.CLUSTER)
        self._rooms: dict[str, _Room] = {}
        self._pending: dict[str, _Pending] = {}
        #: Request ids are unique per incarnation: a restarted node never takes an old reply.
        self._incarnation = secrets.token_hex(6)
        self._ids = itertools.count(1)
        self._started = False
        self._closed = False
        #: Rooms moved to another SFU node with participants of this node in them.
        self.moves = 0
        #: Calls that got no answer within ``rpc_timeout``.
        self.timeouts = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the reply reader and the failover watcher (Redis need not be up yet)."""
        if self._closed:
            raise RuntimeError("remote media is closed")
        if self._started:
            return
        self._started = True
        await self._transport.prepare(self._on_reply)
        self._transport.start_replies()
        self._tasks.spawn(self._watch(), name=f"sfu-failover:{self.node_id}")

    async def close(self) -> None:
        """Stop both tasks, fail every pending call, close the connections (under a deadline)."""
        if self._closed:
            return
        self._closed = True
        await self._transport.stop_replies(self.close_timeout)
        await self._tasks.close()
        for pending in list(self._pending.values()):
            self._fail(pending, "this node is closing")
        self._pending.clear()
        try:
            async with asyncio.timeout(self.close_timeout):
                await self._registry.close(deregister=False)
                await self._transport.close()
        except TimeoutError:
            log.warning("remote media: closing the redis connections took over %.1fs", self.close_timeout)

    # -- MediaPort ------------------------------------------------------------------------------

    async def join(
        self, room: str, participant: str, *, subscribe: bool = True, codecs: tuple[str, ...] | None = None
    ) -> None:
        """``codecs`` reaches the SFU node of this join; a failover re-join elsewhere offers every
        codec (the client rejects what it cannot decode, and gets ``track-unavailable``)."""
        async with self._using(room) as state:
            try:
                # Placement first: a move it triggers concerns the participants already here.
                node = await self._follow(room, state)
                state.participants[participant] = subscribe
                args: dict[str, Any] = {"subscribe": subscribe}
                if codecs is not None:
                    args["codecs"] = list(codecs)
                pending = await self._send(node, "join", room, participant, args)
            except RemoteMediaError:
                # Remembered anyway: once a node can take the room (or Redis is back), the
                # watcher joins it there and tells it to (re)do media.
                state.participants[participant] = subscribe
                state.unjoined.add(participant)
                raise
        try:
            await self._wait(pending)
        except RemoteMediaError as exc:
            if exc.code == SFU_UNAVAILABLE:
                self._unjoined(room, participant, pending.node)
            else:
                # Refused for good (not "try elsewhere"): this participant has no media here.
                await self._forget(room, participant)
            raise

    async def publish(
        self, room: str, participant: str, sdp: str, *, tracks: list[dict[str, Any]] | None = None
    ) -> str:
        args: dict[str, Any] = {"sdp": sdp}
        if tracks:
            args["tracks"] = tracks
        answer = await self._call("publish", room, participant, args)
        if not isinstance(answer, str):
            raise RemoteMediaError(SFU_ERROR, "the SFU node answered publish without an SDP")
        return answer

    async def play(
        self, room: str, participant: str, sdp: str, *, peer: str | None = None, track: str | None = None
    ) -> str:
        answer = await self._call("play", room, participant, {"sdp": sdp, "peer": peer, "track": track})
        if not isinstance(answer, str):
            raise RemoteMediaError(SFU_ERROR, "the SFU node answered play without an SDP")
        return answer

    async def record_start(self, room: str, *, directory: str, track: str | None = None) -> list[dict[str, Any]]:
        """Recording runs on the SFU node holding the room (its disk)."""
        result = await self._call("record_start", room, "", {"directory": directory, "track": track})
        return list(result) if isinstance(result, list) else []

    async def record_stop(self, room: str) -> list[dict[str, Any]]:
        result = await self._call("record_stop", room, "", {})
        return list(result) if isinstance(result, list) else []

    async def recordings(self) -> list[dict[str, Any]]:
        """Recordings of the SFU nodes this node's rooms are placed on."""
        found: list[dict[str, Any]] = []
        for room in list(self._rooms):
            result = await self._call("recordings", room, "", {})
            if isinstance(result, list):
                found.extend(r for r in result if isinstance(r, dict) and r not in found)
        return found

    async def subscriber_answer(self, room: str, participant: str, sdp: str) -> None:
        await self._call("subscriber_answer", room, participant, {"sdp": sdp})

    async def add_candidate(
        self,
        room: str,
        participant: str,
        target: Literal["publisher", "subscriber"],
        candidate: dict[str, Any] | None,
    ) -> None:
        await self._call("add_candidate", room, participant, {"target": target, "candidate": candidate})

    async def unpublish(self, room: str, participant: str, track_id: str) -> None:
        await self._call("unpublish", room, participant, {"track": track_id})

    async def mute(self, room: str, participant: str, track_id: str, muted: bool) -> None:
        await self._call("mute", room, participant, {"track": track_id, "muted": muted})

    async def set_track_state(self, room: str, participant: str, track_id: str, muted: bool) -> None:
        await self._call("track_state", room, participant, {"track": track_id, "muted": muted})

    async def set_subscription(self, room: str, participant: str, track_id: str, quality: str) -> None:
        await self._call("set_subscription", room, participant, {"track": track_id, "quality": quality})

    async def leave(self, room: str, participant: str) -> None:
        """Fire and forget: the SFU node runs it after the participant's earlier requests.

        Not awaited to completion because nothing depends on it and a dead SFU node must not hold
        up a session's end (nor a shutdown ending every session) for a deadline each.
        """
        known = self._rooms.get(room)
        if known is None or participant not in known.participants:
            # Not joined through this node (its session moved here from another signaling
            # node, or its join was refused): the room's SFU node may still hold it.
            try:
                node = await self._registry.placement(room)
            except BackendUnavailable as exc:
                log.warning("room %s: leave of %s not sent: %s", room, participant, exc)
                return
            if node is not None:
                await self._post_quietly(node, "leave", room, participant)
            return
        async with self._using(room) as state:
            state.participants.pop(participant, None)
            state.unjoined.discard(participant)
            node = state.node
            empty = not state.participants
            if node is not None:
                await self._post_quietly(node, "leave", room, participant)
        if empty:
            await self._release_if_orphaned(room)

    async def adopt(self, room: str, participant: str, *, subscribe: bool = True) -> None:
        """Take over the media bookkeeping of a participant joined through another signaling
        node (its session resumed here): no request is sent, but from now on a failover of its
        room moves it too, and its ``leave`` is tracked as usual. Idempotent.

        For the hub's cross-node resume; a participant not adopted still works (calls go to the
        room's node, ``leave`` reaches it), it is only not moved by a failover.
        """
        async with self._using(room) as state:
            if state.node is None:
                # The room's current node, without placing it: adopting must not move a room
                # (nor reset anyone's media) by itself.
                try:
                    state.node = await self._registry.placement(room)
                except BackendUnavailable as exc:
                    log.warning("room %s: placement unknown while adopting %s: %s", room, participant, exc)
            state.participants[participant] = subscribe

    def is_current(self, room: str, node: str) -> bool:
        """False when this node moved ``room`` off ``node``: what ``node`` still says to the
        room's clients is stale (they are starting over with the new node)."""
        state = self._rooms.get(room)
        return state is None or state.node is None or state.node == node

    def stats(self) -> dict[str, Any]:
        return {
            "rooms": len(self._rooms),
            "participants": sum(len(r.participants) for r in self._rooms.values()),
            "rpc_pending": len(self._pending),
            "rpc_timeouts": self.timeouts,
            "room_moves": self.moves,
        }

    # -- routing and failover -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _using(self, room: str) -> AsyncIterator[_Room]:
        """The room's entry, locked; created on demand, forgotten once unused and empty."""
        state = self._rooms.get(room)
        if state is None:
            state = self._rooms[room] = _Room()
        state.users += 1
        try:
            async with state.lock:
                yield state
        finally:
            state.users -= 1
            if state.users == 0 and not state.participants and self._rooms.get(room) is state:
                del self._rooms[room]

    async def _forget(self, room: str, participant: str) -> None:
        async with self._using(room) as state:
            state.participants.pop(participant, None)
            state.unjoined.discard(participant)

    def _unjoined(self, room: str, participant: str, node: str) -> None:
        """A join on ``node`` got no answer: retry it, unless the room moved meanwhile (the move
        joined everyone on the new node) or the participant left."""
        state = self._rooms.get(room)
        if state is not None and state.node == node and participant in state.participants:
            state.unjoined.add(participant)

    async def _call(self, op: Op, room: str, participant: str, args: dict[str, Any]) -> Any:
        async with self._using(room) as state:
            node = await self._follow(room, state)
            pending = await self._send(node, op, room, participant, args)
        return await self._wait(pending)

    async def _follow(self, room: str, state: _Room, *, away_from: str | None = None) -> str:
        """The room's SFU node now; moves the room's local participants first if it changed.

        ``away_from``: a draining node the room should leave if another node can take it.
        Runs under the room's lock. Raises ``sfu-unavailable`` when no node can take the room.
        """
        if self._closed:
            raise RemoteMediaError(SFU_UNAVAILABLE, "this node is closing")
        try:
            placed = await self._registry.place(room, away_from=away_from)
        except BackendUnavailable as exc:
            raise RemoteMediaError(SFU_UNAVAILABLE, f"placing room {room} failed: {exc}") from exc
        move = plan_move(room, state.node, placed, state.participants)
        if move is not None:
            await self._move(state, move)
        if placed is None:
            raise RemoteMediaError(SFU_UNAVAILABLE, f"no SFU node can take room {room}")
        return placed

    async def _move(self, state: _Room, move: Move) -> None:
        """Point the room at its new node; tell local participants to redo media; join them there.

        The ``reconnect`` goes out *before* the joins: a new node answers a join with
        ``track-published``/``subscriber-offer`` through another path (the backend), which must
        find the client already past its reset, not reset it afterwards. Joins are appended under
        the room's lock, so a client that republishes at once is queued behind its join; their
        answers are awaited outside it (by an owned task), so a new node that dies too does not
        stall the room.
        """
        state.node = move.new
        if move.old is not None:
            # Whatever is still waiting on the old node will not be answered by it.
            for pending in [p for p in self._pending.values() if p.node == move.old and p.room == move.room]:
                self._fail(pending, f"SFU node {move.old} was replaced by {move.new}")
        state.unjoined.clear()  # everyone is joined anew
        if not move.participants:
            return
        self.moves += 1
        log.warning(
            "room %s: media moves from SFU node %s to %s; %d local participant(s) redo media",
            move.room, move.old, move.new, len(move.participants),
        )
        await self._rejoin(state, move.room, move.new, move.participants, old=move.old)

    async def _rejoin(
        self, state: _Room, room: str, node: str, participants: tuple[tuple[str, bool], ...], *, old: str | None
    ) -> None:
        """Tell each participant to redo media, then append its join on ``node`` (room locked)."""
        for participant, _subscribe in participants:
            state.unjoined.discard(participant)
            self._emit(participant, protocol.reconnect("rejoin", 0, scope="media"))
        joins: list[tuple[str, _Pending]] = []
        for participant, subscribe in participants:
            if old is not None:
                # Harmless if the old node is dead; if it lives (the room moved under it), it
                # drops the participant's stale connections.
                await self._post_quietly(old, "leave", room, participant)
            try:
                joins.append((participant, await self._send(node, "join", room, participant, {"subscribe": subscribe})))
            except RemoteMediaError as exc:
                log.warning("room %s: joining %s on %s failed: %s", room, participant, node, exc)
                state.unjoined.add(participant)
        if joins:
            self._tasks.spawn(self._await_joins(room, joins), name=f"sfu-join:{room}", owner=f"room:{room}", kind=OwnerKind.ROOM)

    async def _await_joins(self, room: str, joins: list[tuple[str, _Pending]]) -> None:
        results = await asyncio.gather(*(self._wait(p) for _, p in joins), return_exceptions=True)
        for (participant, pending), result in zip(joins, results, strict=True):
            if isinstance(result, RemoteMediaError) and result.code == SFU_UNAVAILABLE:
                log.warning("room %s: %s not joined on %s (retried): %s", room, participant, pending.node, result)
                self._unjoined(room, participant, pending.node)
            elif isinstance(result, BaseException):
                log.warning("room %s: %s not joined on %s: %s", room, participant, pending.node, result)

    async def _watch(self) -> None:
        """The failover watcher: every ``failover_interval``, follow rooms whose node is gone."""
        while not self._closed:
            await asyncio.sleep(self.failover_interval)
            if not self._rooms:
                continue
            try:
                sfus = await self._registry.nodes("sfu")
            except BackendUnavailable as exc:
                log.debug("failover watcher: registry unavailable: %s", exc)
                continue
            live = {n.id for n in sfus}
            draining = {n.id for n in sfus if n.draining}
            current = {room: state.node for room, state in self._rooms.items() if state.participants}
            retry = [room for room, state in self._rooms.items() if state.unjoined]
            for room in rooms_to_check(current, live, retry, draining):
                if room not in self._rooms:
                    continue
                try:
                    async with self._using(room) as state:
                        if not state.participants:
                            continue
                        # A draining node hands its rooms over while it still forwards (make
                        # before break); the room stays there if no other node can take it.
                        leaving = state.node if state.node in draining else None
                        node = await self._follow(room, state, away_from=leaving)
                        again = tuple((p, state.participants[p]) for p in sorted(state.unjoined) if p in state.participants)
                        if again:
                            log.info("room %s: joining %d participant(s) on %s again", room, len(again), node)
                            await self._rejoin(state, room, node, again, old=None)
                except RemoteMediaError as exc:
                    log.debug("failover watcher: room %s: %s", room, exc)

    async def _release_if_orphaned(self, room: str) -> None:
        """The room ended; if its SFU node is dead nobody else will release its placement."""
        if self._room_members is None:
            return
        try:
            if await self._room_members(room):
                return
            node = await self._registry.placement(room)
            if node is None:
                return
            if node not in {n.id for n in await self._registry.nodes("sfu")}:
                await self._registry.release(room)
        except BackendUnavailable as exc:
            log.debug("room %s: could not release its placement: %s", room, exc)

    # -- requests and replies -------------------------------------------------------------------

    def _request(self, op: Op, room: str, participant: str, args: dict[str, Any], *, reply: bool) -> Request:
        return Request(
            id=f"{self._incarnation}:{next(self._ids)}",
            op=op,
            room=room,
            participant=participant,
            args=args,
            reply_to=self.node_id if reply else None,
            deadline=time.time() + self.rpc_timeout,
        )

    async def _send(self, node: str, op: Op, room: str, participant: str, args: dict[str, Any]) -> _Pending:
        """Append a request for ``node``; the returned entry's future gets the reply."""
        request = self._request(op, room, participant, args, reply=True)
        loop = asyncio.get_running_loop()
        pending = _Pending(request.id, node, room, loop.create_future(), loop.time() + self.rpc_timeout)
        self._pending[request.id] = pending
        try:
            await self._transport.send(node, request.encode(), what=f"sfu {op}")
        except BackendUnavailable as exc:
            self._pending.pop(request.id, None)
            raise RemoteMediaError(SFU_UNAVAILABLE, f"{op}: request to SFU node {node} not sent: {exc}") from exc
        except Exception as exc:
            # ``close`` tore the connection down under the append (redis-py then fails with
            # whatever its half-closed connection raises): the caller hears "unavailable".
            if not self._closed:
                raise
            self._pending.pop(request.id, None)
            raise RemoteMediaError(SFU_UNAVAILABLE, f"{op}: this node is closing") from exc
        return pending

    async def _wait(self, pending: _Pending) -> Any:
        """The reply's result, or :class:`RemoteMediaError` (a refusal, or no answer in time)."""
        try:
            async with asyncio.timeout_at(pending.deadline):
                reply = await pending.future
        except TimeoutError:
            self.timeouts += 1
            raise RemoteMediaError(
                SFU_UNAVAILABLE, f"SFU node {pending.node} did not answer within {self.rpc_timeout:.1f}s"
            ) from None
        finally:
            self._pending.pop(pending.id, None)
        return reply.raise_for_refusal()

    async def _post_quietly(self, node: str, op: Op, room: str, participant: str) -> None:
        """Append a request nobody waits for; a failure is only logged (bookkeeping)."""
        request = self._request(op, room, participant, {}, reply=False)
        try:
            await self._transport.send(node, request.encode(), what=f"sfu {op}")
        except BackendUnavailable as exc:
            log.warning("room %s: %s of %s not sent to SFU node %s: %s", room, op, participant, node, exc)

    def _fail(self, pending: _Pending, why: str) -> None:
        future = pending.future
        if not future.done():
            future.set_exception(RemoteMediaError(SFU_UNAVAILABLE, why))
            # Its caller may have been cancelled before awaiting it: mark the exception seen so
            # asyncio does not report it as lost (the caller still gets it when it awaits).
            future.exception()

    async def _on_reply(self, fields: dict[str, str]) -> None:
        try:
            reply = Reply.decode(fields["m"])
        except (KeyError, RpcFormatError) as exc:
            log.error("remote media: malformed reply %r dropped: %s", fields, exc)
            return
        pending = self._pending.get(reply.id)
        if pending is not None and not pending.future.done():
            pending.future.set_result(reply)
