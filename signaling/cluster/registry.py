"""Node registry and room -> SFU placement in Redis.

Key layout (``p`` is ``key_prefix``)::

    p node:<id>          string  NodeInfo JSON, PX ttl; refreshed every heartbeat_interval
    p nodes              set     ids ever registered; pruned of ids whose node key expired
    p placement          hash    room -> SFU node id (sticky for the life of the room)
    p rooms-on:<id>      set     rooms placed on <id>
    p placed-nodes       set     nodes with at least one placed room (failover scan)

A node is alive exactly while its ``node:<id>`` key exists: a node that stops heart-beating
disappears after ``ttl`` without anyone deleting anything.

Placement splits policy from atomicity. :func:`choose_node` (pure, unit-tested) picks the
least-loaded live SFU with room left from a snapshot; a Lua script then commits the choice only if
the invariants still hold at that instant (room not placed yet, node alive, not draining, below
capacity). When a concurrent placement got there first, the script refuses and ``place`` takes a
new snapshot. Capacity can therefore never be exceeded and a room is never on two nodes, however
many signaling nodes place rooms at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Literal, cast

from signaling.backend.base import BackendUnavailable
from signaling.cluster.connect import make_client
from signaling.cluster.redis_io import bounded
from signaling.core.backoff import Backoff
from signaling.runtime.tasks import OwnerKind, TaskRegistry

log = logging.getLogger(__name__)

NodeKind = Literal["signaling", "sfu"]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a node publishes about itself on every heartbeat."""

    #: Unique node id (``--node-id``).
    id: str
    #: ``"signaling"`` or ``"sfu"``; only SFU nodes take room placements.
    kind: NodeKind
    #: Where other nodes reach it (e.g. ``http://10.0.0.7:8081``).
    address: str
    #: Rooms the node accepts (for SFU nodes; informational for signaling nodes).
    capacity: int
    #: Rooms the node reports hosting, in the same unit as ``capacity``.
    load: float = 0.0
    #: A draining node keeps its rooms but takes no new ones.
    draining: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @staticmethod
    def from_json(raw: str) -> NodeInfo:
        data = json.loads(raw)
        kind = data["kind"]
        if kind not in ("signaling", "sfu"):
            raise ValueError(f"unknown node kind {kind!r}")
        return NodeInfo(
            id=str(data["id"]),
            kind=kind,
            address=str(data["address"]),
            capacity=int(data["capacity"]),
            load=float(data.get("load", 0.0)),
            draining=bool(data.get("draining", False)),
        )


def utilisation(node: NodeInfo, placed: int) -> float:
    """How full ``node`` is: rooms placed on it or rooms it reports, whichever is larger."""
    return max(placed, node.load) / node.capacity


def choose_node(nodes: Iterable[NodeInfo], placed: Mapping[str, int]) -> str | None:
    """The SFU node a new room goes to, or None when none can take it.

    Skips non-SFU, draining and full nodes (``max(placed, load) >= capacity``). Among the rest,
    the lowest utilisation wins (so a node twice as large takes twice the rooms), then the fewest
    placed rooms, then the smallest id, so the choice is deterministic. Dead nodes never appear in
    ``nodes``: the registry lists live nodes only.
    """
    best: tuple[float, int, str] | None = None
    for node in nodes:
        if node.kind != "sfu" or node.draining or node.capacity <= 0:
            continue
        count = placed.get(node.id, 0)
        if max(count, node.load) >= node.capacity:
            continue
        key = (utilisation(node, count), count, node.id)
        if best is None or key < best:
            best = key
    return None if best is None else best[2]


# Commit a placement if it is still valid. KEYS: placement hash, node key, rooms-on set of node,
# placed-nodes. ARGV: room, node id, key prefix, node to move the room away from ('' for none).
# Returns {1, node} when placed (by us or earlier), {0, reason} to retry with a fresh snapshot.
# The current placement stands while its node lives, unless it is ARGV[4] (a draining node handing
# its rooms over); the old placement is removed only once the new node is known to be valid.
_COMMIT = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and cur ~= ARGV[4] and redis.call('EXISTS', ARGV[3] .. 'node:' .. cur) == 1 then return {1, cur} end
local raw = redis.call('GET', KEYS[2])
if not raw then return {0, 'dead'} end
local info = cjson.decode(raw)
if info['kind'] ~= 'sfu' then return {0, 'kind'} end
if info['draining'] then return {0, 'draining'} end
local count = redis.call('SCARD', KEYS[3])
if count >= tonumber(info['capacity']) or tonumber(info['load']) >= tonumber(info['capacity']) then
  return {0, 'full'}
end
if cur then
  local old = ARGV[3] .. 'rooms-on:' .. cur
  redis.call('SREM', old, ARGV[1])
  if redis.call('SCARD', old) == 0 then redis.call('SREM', KEYS[4], cur) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[2])
return {1, ARGV[2]}
"""

# KEYS: placement hash, placed-nodes. ARGV: room, key prefix. Returns the node it was on.
_RELEASE = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
local on = ARGV[2] .. 'rooms-on:' .. cur
redis.call('SREM', on, ARGV[1])
if redis.call('SCARD', on) == 0 then redis.call('SREM', KEYS[2], cur) end
return cur
"""

# KEYS: node key, nodes set. ARGV: node id, info JSON, ttl ms.
_HEARTBEAT = """
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""


class NodeRegistry:
    """Live nodes and room placement, shared by every node through Redis.

    Any node may read the registry and place rooms; a node that calls :meth:`register` also
    publishes itself from a heartbeat task until :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "sb:",
        heartbeat_interval: float = 2.0,
        ttl: float = 6.0,
        op_timeout: float = 2.0,
        max_attempts: int = 16,
        max_connections: int = 8,
    ) -> None:
        """
        :param heartbeat_interval: seconds between two publications of this node's info.
        :param ttl: a node whose info was not refreshed for this long is dead (about 3 beats).
        :param op_timeout: deadline of every Redis call.
        :param max_attempts: snapshots ``place`` takes under contention before giving up.
        """
        if ttl <= heartbeat_interval:
            raise ValueError("ttl must exceed heartbeat_interval, or a live node would flicker")
        self.prefix = key_prefix
        self.heartbeat_interval = heartbeat_interval
        self.ttl = ttl
        self.op_timeout = op_timeout
        self.max_attempts = max_attempts
        self._redis = make_client(url, op_timeout=op_timeout, max_connections=max_connections)
        self._commit = self._redis.register_script(_COMMIT)
        self._release = self._redis.register_script(_RELEASE)
        self._heartbeat = self._redis.register_script(_HEARTBEAT)
        self._tasks = TaskRegistry("node-registry", OwnerKind.CLUSTER)
        self._info: NodeInfo | None = None
        #: Whether the last heartbeat reached Redis.
        self._published = False
        self._closed = False

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # -- this node ------------------------------------------------------------------------------

    @property
    def info(self) -> NodeInfo | None:
        return self._info

    async def register(self, info: NodeInfo) -> None:
        """Publish ``info`` now, then every ``heartbeat_interval`` from an owned task.

        Raises :class:`BackendUnavailable` if the first publication fails (nothing is started).
        """
        if self._closed:
            raise RuntimeError("registry is closed")
        if self._info is not None:
            raise RuntimeError(f"node {self._info.id} registered already")
        self._info = info
        try:
            await self.publish()
        except BackendUnavailable:
            self._info = None
            raise
        self._tasks.spawn(self._beat(), name=f"heartbeat:{info.id}")

    def update(self, *, load: float | None = None, capacity: int | None = None, draining: bool | None = None) -> None:
        """Change what the next heartbeat publishes (``await publish()`` to publish at once)."""
        if self._info is None:
            raise RuntimeError("not registered")
        info = self._info
        self._info = replace(
            info,
            load=info.load if load is None else load,
            capacity=info.capacity if capacity is None else capacity,
            draining=info.draining if draining is None else draining,
        )

    async def set_draining(self, draining: bool = True) -> None:
        """Stop (or resume) taking new rooms; published immediately."""
        self.update(draining=draining)
        await self.publish()

    async def publish(self) -> None:
        info = self._info
        if info is None:
            raise RuntimeError("not registered")
        try:
            await bounded(
                self._heartbeat(
                    keys=[self._key("node", info.id), self._key("nodes")],
                    args=[info.id, info.to_json(), round(self.ttl * 1000)],
                ),
                self.op_timeout,
                "heartbeat",
            )
        except BackendUnavailable:
            self._published = False
            raise
        self._published = True

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        # Retries never wait longer than one interval: backing off must not let the node expire.
        backoff = Backoff(base=self.heartbeat_interval / 8, cap=self.heartbeat_interval, stable_after=0.0)
        backoff.connected(loop.time())
        # Not ``while True``: a cancellation swallowed inside redis-py (Python 3.11) must not keep
        # a closed registry beating.
        while not self._closed:
            await asyncio.sleep(self.heartbeat_interval)
            while not self._closed:
                try:
                    await self.publish()
                    backoff.connected(loop.time())
                    break
                except BackendUnavailable as exc:
                    backoff.disconnected(loop.time())
                    log.warning("node %s: heartbeat failed: %s", self._info.id if self._info else "?", exc)
                    await asyncio.sleep(backoff.next_delay())

    async def ready(self) -> bool:
        """Registered: the last heartbeat reached Redis. Otherwise: Redis answers a PING."""
        if self._closed:
            return False
        if self._info is not None:
            return self._published
        try:
            return bool(await bounded(self._redis.ping(), self.op_timeout, "ping"))
        except BackendUnavailable:
            return False

    async def close(self, *, deregister: bool = True) -> None:
        """Stop heart-beating; with ``deregister`` also remove this node at once (else it expires).

        Idempotent. Placements on this node are left alone: a draining SFU keeps its rooms until
        they end, and a closed one's rooms show up in :meth:`orphaned` once the key is gone.
        """
        if self._closed:
            return
        self._closed = True
        await self._tasks.close()
        try:
            if deregister and self._info is not None:
                node = self._info.id
                await bounded(self._redis.delete(self._key("node", node)), self.op_timeout, "deregister")
                await bounded(self._redis.srem(self._key("nodes"), node), self.op_timeout, "deregister")
        except BackendUnavailable as exc:
            log.warning("node registry: could not deregister: %s", exc)
        finally:
            await self._redis.aclose()

    # -- every node -----------------------------------------------------------------------------

    async def nodes(self, kind: NodeKind | None = None) -> list[NodeInfo]:
        """Live nodes (optionally of one kind), sorted by id; forgets ids whose key expired."""
        ids = sorted(cast("set[str]", await bounded(self._redis.smembers(self._key("nodes")), self.op_timeout, "nodes")))
        if not ids:
            return []
        raws = cast(
            "list[str | None]",
            await bounded(self._redis.mget([self._key("node", i) for i in ids]), self.op_timeout, "nodes"),
        )
        live: list[NodeInfo] = []
        dead: list[str] = []
        for node_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                dead.append(node_id)
                continue
            try:
                info = NodeInfo.from_json(raw)
            except (ValueError, KeyError, TypeError):
                log.error("node registry: malformed entry for %s dropped from the listing", node_id)
                continue
            if kind is None or info.kind == kind:
                live.append(info)
        if dead:
            # A node that re-registers in between is re-added by its next heartbeat.
            await bounded(self._redis.srem(self._key("nodes"), *dead), self.op_timeout, "prune")
        return live

    async def placement(self, room: str) -> str | None:
        """The node ``room`` is placed on (alive or not), or None."""
        node = await bounded(self._redis.hget(self._key("placement"), room), self.op_timeout, "placement")
        return cast("str | None", node)

    async def place(self, room: str, *, away_from: str | None = None) -> str | None:
        """The SFU node of ``room``: its current one while that node lives, else a new one.

        ``away_from`` names a (draining) node the room should leave although it lives: the room
        moves to another node if one can take it, and stays where it is otherwise (it moves once
        that node is gone). A room placed elsewhere already is not touched. None when no live SFU
        node has capacity left (or contention outlasted ``max_attempts``).
        """
        for _ in range(self.max_attempts):
            current = await self.placement(room)
            if current is not None and current != away_from and await self._alive(current):
                return current
            sfus = await self.nodes("sfu")
            counts = await self._placed_counts([n.id for n in sfus])
            choice = choose_node([n for n in sfus if n.id != away_from], counts)
            if choice is None:
                # No room left anywhere, unless a concurrent ``place`` took the last slot for this
                # very room while we were looking (or the room stays on the node it should leave).
                current = await self.placement(room)
                return current if current is not None and await self._alive(current) else None
            placed, node = cast(
                "list[int | str]",
                await bounded(
                    self._commit(
                        keys=[
                            self._key("placement"),
                            self._key("node", choice),
                            self._key("rooms-on", choice),
                            self._key("placed-nodes"),
                        ],
                        args=[room, choice, self.prefix, away_from or ""],
                    ),
                    self.op_timeout,
                    "place",
                ),
            )
            if int(placed) == 1:
                return str(node)
            log.debug("placement of room %s on %s refused (%s); retrying", room, choice, node)
        log.warning("placement of room %s gave up after %d attempts", room, self.max_attempts)
        return None

    async def release(self, room: str) -> str | None:
        """Forget the room's placement (the room ended); return the node it was on."""
        node = await bounded(
            self._release(keys=[self._key("placement"), self._key("placed-nodes")], args=[room, self.prefix]),
            self.op_timeout,
            "release",
        )
        return cast("str | None", node)

    async def rooms_on(self, node_id: str) -> set[str]:
        rooms = await bounded(self._redis.smembers(self._key("rooms-on", node_id)), self.op_timeout, "rooms_on")
        return cast("set[str]", rooms)

    async def orphaned(self) -> dict[str, str]:
        """Rooms placed on a node that is dead now: room -> dead node id."""
        nodes = sorted(cast("set[str]", await bounded(self._redis.smembers(self._key("placed-nodes")), self.op_timeout, "orphaned")))
        out: dict[str, str] = {}
        for node in nodes:
            if not await self._alive(node):
                for room in sorted(await self.rooms_on(node)):
                    out[room] = node
        return out

    async def _alive(self, node_id: str) -> bool:
        n = await bounded(self._redis.exists(self._key("node", node_id)), self.op_timeout, "alive")
        return int(n) == 1

    async def _placed_counts(self, node_ids: list[str]) -> dict[str, int]:
        if not node_ids:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for node_id in node_ids:
            pipe.scard(self._key("rooms-on", node_id))
        counts = await bounded(pipe.execute(), self.op_timeout, "placed counts")
        return {node_id: int(c) for node_id, c in zip(node_ids, counts, strict=True)}
