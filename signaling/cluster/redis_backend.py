"""The cluster backend: membership in Redis, delivery through one Redis Stream per node.

Key layout (``p`` is ``key_prefix``, ``"sb:"`` by default)::

    p room:<room>        hash   peer id -> member JSON (deleted by Redis when it empties)
    p rooms              set    room names with at least one member
    p peers              hash   peer id -> member JSON (the peer -> member index)
    p node-peers:<node>  set    peer ids held by <node> (resync and reaping)
    p member-nodes       set    nodes with at least one member (reaping)
    p joinseq            string join counter, so members list in join order like the memory backend
    p inbox:<node>       stream messages for peers held by <node>; XADD MAXLEN ~ inbox_maxlen,
                                key TTL inbox_ttl refreshed by every XADD
    p alive:<node>       string present while <node>'s reader runs; TTL alive_ttl

Why a stream and not pub/sub: a pub/sub message published while the subscriber is reconnecting
is gone, silently. A stream entry stays until trimmed, and the one reader of a node remembers the
last id it delivered, so after a reconnect it continues exactly where it stopped: in order, once.

Every membership change is one Lua script, so ``max_members`` holds across nodes (two nodes
cannot overfill a room) and an index entry never outlives its room entry. The scripts build some
key names from the prefix (a member's node is only known inside the script): this targets one
Redis server (or a Sentinel-managed primary), not Redis Cluster.

Outage: every call is bounded by ``op_timeout``; a failed call raises :class:`BackendUnavailable`.
The reader reconnects with :class:`~signaling.core.backoff.Backoff` and, before it reports healthy
again, *resyncs*: it re-writes this node's members (Redis may have restarted empty, or a
Sentinel failover may have lost the last writes), removes members of this node that the node no
longer holds, refreshes its ``alive`` key and checks that its stream position is still valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from signaling.backend.base import (
    Backend,
    BackendUnavailable,
    Delivery,
    Member,
    SessionMoved,
)
from signaling.cluster.batch import ScriptBatcher

# Re-exported: the registry, RemoteMedia and the SFU node import the factory from here.
from signaling.cluster.connect import make_client as make_client
from signaling.cluster.durable import ReplicaWait

# Re-exported: the CLI's check and older callers import these two from here.
from signaling.cluster.redis_io import REDIS_ERRORS as REDIS_ERRORS
from signaling.cluster.redis_io import bounded as bounded
from signaling.core.backoff import Backoff
from signaling.runtime.tasks import OwnerKind, TaskRegistry

if TYPE_CHECKING:

    from signaling.cluster.ledger import SessionLedger

log = logging.getLogger(__name__)

T = TypeVar("T")


#: What a send script answers while the cluster resyncs: try again shortly.
_WAIT = "wait"


async def send_settled(call: Callable[[], Awaitable[T]], *, op_timeout: float, patience: float) -> T | None:
    """Run a send script; while it answers ``'wait'`` (the peer is unknown but the cluster is
    still writing members back after Redis lost data), call it again, up to ``patience``
    seconds; then the peer is unknown (None)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    pause = 0.01
    while True:
        reply = await bounded(call(), op_timeout, "send")
        if reply != _WAIT:
            return reply
        if loop.time() >= deadline:
            return None
        await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        pause = min(pause * 2, 0.25)



def member_json(member: Member, join_seq: int = 0) -> str:
    return json.dumps(
        {"peer_id": member.peer_id, "name": member.name, "room": member.room, "node_id": member.node_id, "j": join_seq},
        separators=(",", ":"),
    )


def parse_member(raw: str) -> tuple[int, Member]:
    data = json.loads(raw)
    return int(data.get("j", 0)), Member(data["peer_id"], data["name"], data["room"], data["node_id"])


def members_in_join_order(raws: Sequence[str]) -> list[Member]:
    return [m for _, m in sorted((parse_member(r) for r in raws), key=lambda jm: jm[0])]


def stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


# KEYS: room hash, peers index, rooms set, joinseq
# ARGV: peer id, member JSON without join seq, max members (-1: none), room name, node-peers prefix,
#       member-nodes set
_ADD = """
local before = redis.call('HVALS', KEYS[1])
local max = tonumber(ARGV[3])
if max >= 0 and #before >= max then return false end
local m = cjson.decode(ARGV[2])
m['j'] = redis.call('INCR', KEYS[4])
local raw = cjson.encode(m)
redis.call('HSET', KEYS[1], ARGV[1], raw)
redis.call('HSET', KEYS[2], ARGV[1], raw)
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('SADD', ARGV[5] .. m['node_id'], ARGV[1])
redis.call('SADD', ARGV[6], m['node_id'])
return {m['j'], before}
"""

# KEYS: room hash, peers index, rooms set; ARGV: peer id, room name, node-peers prefix, member-nodes,
# removing node ('' any). A member that moved to another node (its session resumed there) is not
# removed by the node it left.
_REMOVE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
local node = cjson.decode(raw)['node_id']
if ARGV[5] ~= '' and node ~= ARGV[5] then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local held = ARGV[3] .. node
redis.call('SREM', held, ARGV[1])
if redis.call('SCARD', held) == 0 then redis.call('SREM', ARGV[4], node) end
local rest = redis.call('HVALS', KEYS[1])
if #rest == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
return rest
"""

# KEYS: peers index, origin session hash ('' key name when none), resync-until, reaped tombstone of
#       the sender node
# ARGV: peer id, payload, sender node, inbox prefix, maxlen, inbox ttl ms, origin cseq (0: none),
#       room the peer must be in ('' any), once key ('' none), once ttl ms
# Appends to the inbox of the node holding the peer, always (the node's own included: that inbox is
# what a resume elsewhere reads what this node had not stamped yet). With an origin, the sender's
# relayed cseq (``rcseq``) advances in the same step, so a client's resend after its node died is a
# duplicate. With a once key, a second send under the same key (a retry whose first attempt landed
# but whose reply was lost) is a duplicate too.
# Returns the node, false for an unknown peer, 'dup' for a duplicate, 'moved' when the origin
# session is owned by another node now, 'wait' when the peer is unknown while the cluster resyncs
# after Redis lost data (the peer may be about to be written back), 'reaped' when the sender node
# was reaped (it must fence itself before it sends anything).
_SEND = """
if redis.call('EXISTS', KEYS[4]) == 1 then return 'reaped' end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  local u = redis.call('GET', KEYS[3])
  if not u then return 'wait' end
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) < tonumber(u) then return 'wait' end
  return false
end
local m = cjson.decode(raw)
if ARGV[8] ~= '' and m['room'] ~= ARGV[8] then return false end
local cseq = tonumber(ARGV[7])
if cseq > 0 then
  local owner = redis.call('HGET', KEYS[2], 'owner')
  if owner and owner ~= ARGV[3] then return 'moved' end
  if owner then
    if cseq <= tonumber(redis.call('HGET', KEYS[2], 'rcseq') or '0') then return 'dup' end
    redis.call('HSET', KEYS[2], 'rcseq', cseq)
  end
end
if ARGV[9] ~= '' and not redis.call('SET', ARGV[9], '1', 'NX', 'PX', ARGV[10]) then return 'dup' end
local node = m['node_id']
local inbox = ARGV[4] .. node
redis.call('XADD', inbox, 'MAXLEN', '~', ARGV[5], '*', 'p', ARGV[1], 'm', ARGV[2])
redis.call('PEXPIRE', inbox, ARGV[6])
return node
"""

# Milliseconds until the cluster counts as resynced (0: it is; -1: Redis holds no resync marker:
# it restarted empty and no node has written its members back yet). KEYS: resync-until.
_UNSETTLED = """
local u = redis.call('GET', KEYS[1])
if not u then return -1 end
local t = redis.call('TIME')
local left = tonumber(u) - (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
if left < 0 then return 0 end
return left
"""

# KEYS: rooms set. Returns a flat list room, count, ...; drops names whose hash vanished.
_ROOMS = """
local out = {}
for _, room in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local n = redis.call('HLEN', ARGV[1] .. room)
  if n == 0 then
    redis.call('SREM', KEYS[1], room)
  else
    out[#out + 1] = room
    out[#out + 1] = n
  end
end
return out
"""

# Make Redis hold exactly ``members`` for this node (after an outage or at start), and refresh its
# alive key in the same step (so a reaper never runs between the two).
# KEYS: node-peers set of this node, peers index, rooms set, member-nodes, joinseq, resync-until,
#       reaped tombstone of this node, alive key of this node
# ARGV: node id, room prefix, resync window ms, alive ttl ms, '1' on this incarnation's first sync,
#       then member JSONs
# Returns {'reaped'} when this node was reaped while it was away (stalled or cut off): nothing is
# written back, its members stay gone, and the node must end the sessions it holds. Otherwise
# {'ok', members written back}. Writing back a member Redis had lost opens the resync window
# (``resync-until``): until it closes, an unknown peer may be one whose node has not resynced yet.
_RESYNC = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[8], '1', 'PX', ARGV[4])
if redis.call('EXISTS', KEYS[7]) == 1 then
  redis.call('DEL', KEYS[7])
  if ARGV[5] ~= '1' then
    for _, peer in ipairs(redis.call('SMEMBERS', KEYS[1])) do
      local raw = redis.call('HGET', KEYS[2], peer)
      if raw and cjson.decode(raw)['node_id'] == ARGV[1] then
        local m = cjson.decode(raw)
        local room = ARGV[2] .. m['room']
        redis.call('HDEL', room, peer)
        redis.call('HDEL', KEYS[2], peer)
        if redis.call('HLEN', room) == 0 then redis.call('SREM', KEYS[3], m['room']) end
      end
    end
    redis.call('DEL', KEYS[1])
    redis.call('SREM', KEYS[4], ARGV[1])
    if not redis.call('GET', KEYS[6]) then redis.call('SET', KEYS[6], now) end
    return {'reaped'}
  end
end
local keep = {}
local restored = 0
for i = 6, #ARGV do
  local m = cjson.decode(ARGV[i])
  keep[m['peer_id']] = true
  local room = ARGV[2] .. m['room']
  if redis.call('HEXISTS', room, m['peer_id']) == 0 then
    -- Keep the original join order: the counter never goes below a join seq in use.
    if tonumber(redis.call('GET', KEYS[5]) or '0') < m['j'] then redis.call('SET', KEYS[5], m['j']) end
    redis.call('HSET', room, m['peer_id'], ARGV[i])
    redis.call('HSET', KEYS[2], m['peer_id'], ARGV[i])
    redis.call('SADD', KEYS[3], m['room'])
    redis.call('SADD', KEYS[1], m['peer_id'])
    restored = restored + 1
  end
end
for _, peer in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not keep[peer] then
    local raw = redis.call('HGET', KEYS[2], peer)
    if raw then
      local m = cjson.decode(raw)
      if m['node_id'] == ARGV[1] then
        local room = ARGV[2] .. m['room']
        redis.call('HDEL', room, peer)
        redis.call('HDEL', KEYS[2], peer)
        if redis.call('HLEN', room) == 0 then redis.call('SREM', KEYS[3], m['room']) end
      end
    end
    redis.call('SREM', KEYS[1], peer)
  end
end
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[4], ARGV[1])
else
  redis.call('SADD', KEYS[4], ARGV[1])
end
local until_ms = tonumber(redis.call('GET', KEYS[6]) or '-1')
if restored > 0 and until_ms < now + tonumber(ARGV[3]) then
  redis.call('SET', KEYS[6], now + tonumber(ARGV[3]))
elseif until_ms < 0 then
  redis.call('SET', KEYS[6], now)
end
return {'ok', restored}
"""

# Remove every member of a node whose alive key expired ``grace`` ms ago or more. Re-checks
# liveness inside the script. The first call that finds the node dead only notes the time: its
# clients have the grace period to resume on another node (which moves their membership there).
# The reaped node gets a tombstone (``reaped:<node>``): if it was only stalled or cut off, it finds
# the tombstone at its next resync and ends its sessions instead of writing them back (fencing).
# KEYS: alive key, node-peers set, peers index, rooms set, member-nodes, inbox, dead-since key,
#       tombstone
# ARGV: node id, room prefix, grace ms, tombstone ttl ms. Returns the removed member JSONs.
_REAP = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[7])
  return {}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grace = tonumber(ARGV[3])
if grace > 0 then
  local since = tonumber(redis.call('GET', KEYS[7]) or '-1')
  if since < 0 then
    redis.call('SET', KEYS[7], now, 'PX', grace + 60000)
    return {}
  end
  if now - since < grace then return {} end
end
local removed = {}
for _, peer in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local raw = redis.call('HGET', KEYS[3], peer)
  if raw then
    local m = cjson.decode(raw)
    if m['node_id'] == ARGV[1] then
      local room = ARGV[2] .. m['room']
      redis.call('HDEL', room, peer)
      redis.call('HDEL', KEYS[3], peer)
      if redis.call('HLEN', room) == 0 then redis.call('SREM', KEYS[4], m['room']) end
      removed[#removed + 1] = raw
    end
  end
end
redis.call('DEL', KEYS[2], KEYS[6], KEYS[7])
redis.call('SREM', KEYS[5], ARGV[1])
redis.call('SET', KEYS[8], now, 'PX', ARGV[4])
return removed
"""


class RedisBackend(Backend):
    """:class:`Backend` over Redis: any number of signaling nodes share rooms.

    One reader task per node reads the node's inbox stream (``XREAD BLOCK``) and calls
    ``deliver`` for each entry, in stream order, with the entry id. A ``send`` to a peer of this
    same node goes through the inbox too: the session ledger records which entries a session has
    stamped, and a resume on another node takes the rest from this inbox (see ``ledger.py``).
    """

    clustered = True

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "sb:",
        op_timeout: float = 2.0,
        block: float = 1.0,
        read_count: int = 256,
        inbox_maxlen: int = 10_000,
        inbox_ttl: float = 300.0,
        alive_interval: float = 2.0,
        alive_ttl: float = 6.0,
        start_timeout: float = 10.0,
        backoff: Backoff | None = None,
        max_connections: int = 32,
        session_ttl: float = 600.0,
        replay_maxlen: int = 1024,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        resync_window: float | None = None,
        tombstone_ttl: float = 86_400.0,
    ) -> None:
        """
        :param op_timeout: deadline of every Redis call (seconds).
        :param block: how long one ``XREAD BLOCK`` waits (seconds); keep it below ``alive_interval``.
        :param inbox_maxlen: approximate bound of each node's inbox stream (oldest entries trimmed).
        :param inbox_ttl: an inbox nobody writes to for this long is deleted (seconds).
        :param alive_interval: how often the reader refreshes this node's ``alive`` key.
        :param alive_ttl: the node counts as dead (and its members reapable) this long after its
            last refresh.
        :param start_timeout: how long ``start()`` keeps trying to reach Redis before it raises.
        :param backoff: reconnect delays of the reader (default: 0, then up to 50 ms ... 2 s).
        :param session_ttl: session keys (``sess:``, ``mbox:``) expire this long after their
            owner last refreshed them (it does so every third of it).
        :param replay_maxlen: approximate bound of a session's mailbox stream (the hub enforces
            the exact replay bound; this only keeps Redis bounded whatever happens).
        :param wait_replicas: durable before confirmed: every session-ledger batch and every
            ``send`` waits for this many replicas (fewer if fewer are connected; see
            ``durable.py`` and ``cluster.ledger_wait_replicas``); 0 does not wait.
        :param resync_window: after a node writes back members Redis had lost, for this long an
            unknown peer may be one whose node has not resynced yet: ``send`` waits (up to twice
            this) instead of reporting it unknown, and membership reads wait for the window to
            close (default ``alive_ttl``: a live node notices the loss and resyncs well within it).
        :param tombstone_ttl: how long a reaped node's tombstone is kept (a node stalled longer
            than this would not learn it was reaped).
        """
        self.url = url
        self.prefix = key_prefix
        self.op_timeout = op_timeout
        self.block = block
        self.read_count = read_count
        self.inbox_maxlen = inbox_maxlen
        self.inbox_ttl = inbox_ttl
        self.alive_interval = alive_interval
        self.alive_ttl = alive_ttl
        self.start_timeout = start_timeout
        self._backoff = backoff or Backoff(base=0.05, cap=2.0, stable_after=2 * alive_interval)
        self._redis = make_client(url, op_timeout=op_timeout, max_connections=max_connections)
        # The reader's own connection: its socket timeout must outlast one XREAD BLOCK.
        self._reader_redis = make_client(url, op_timeout=op_timeout, read_timeout=block + op_timeout, max_connections=1)
        self._add = self._redis.register_script(_ADD)
        self._remove = self._redis.register_script(_REMOVE)
        self._send = self._redis.register_script(_SEND)
        self._rooms = self._redis.register_script(_ROOMS)
        self._resync = self._reader_redis.register_script(_RESYNC)
        self._reap = self._redis.register_script(_REAP)
        self._tasks = TaskRegistry("redis-backend", OwnerKind.BACKEND)
        self._node_id: str | None = None
        self._deliver: Delivery | None = None
        #: Members this node added, with their join seq: the source of truth for a resync.
        self._local: dict[str, tuple[Member, int]] = {}
        #: Membership changes and resyncs are serialised, so a resync never resurrects a member
        #: removed concurrently.
        self._membership = asyncio.Lock()
        #: Id of the last inbox entry delivered (None until the first sync).
        self._last_id: str | None = None
        self._healthy = False
        #: A membership write failed: Redis may disagree with ``_local`` until the next resync.
        self._dirty = False
        self._closed = False
        self.session_ttl = session_ttl
        self.replay_maxlen = replay_maxlen
        self.resync_window = alive_ttl if resync_window is None else resync_window
        self.tombstone_ttl = tombstone_ttl
        self._unsettled = self._redis.register_script(_UNSETTLED)
        self._ledger: SessionLedger | None = None
        self.durable = ReplicaWait(wait_replicas, wait_timeout)
        #: Relays of concurrent connections travel together: one pipeline (and, with the
        #: replica wait on, one ``WAIT``) per burst instead of one round trip each.
        self._send_batcher = ScriptBatcher(
            self._redis, self._send, self._tasks, durable=self.durable,
            seconds=op_timeout + self.durable.timeout, what="send",
        )
        #: This incarnation has synced once (an old tombstone of its node id is not about it).
        self._synced_once = False

    # -- keys -----------------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def inbox_key(self, node_id: str) -> str:
        return self._key("inbox", node_id)

    def alive_key(self, node_id: str) -> str:
        return self._key("alive", node_id)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, node_id: str, deliver: Delivery) -> None:
        """Sync with Redis (retrying up to ``start_timeout``), then start the node's reader.

        Raises :class:`BackendUnavailable` if Redis stays unreachable that long.
        """
        if self._closed:
            raise RuntimeError("backend is closed")
        if self._node_id is not None:
            raise RuntimeError("backend started already")
        self._node_id, self._deliver = node_id, deliver
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        backoff = Backoff(base=0.05, cap=1.0)
        while True:
            try:
                await self._sync()
                break
            except BackendUnavailable as exc:
                delay = backoff.next_delay()
                if loop.time() + delay >= deadline:
                    self._node_id = self._deliver = None
                    raise BackendUnavailable(f"redis unreachable for {self.start_timeout} s at start") from exc
                log.warning("redis backend of node %s: start: %s; retrying", node_id, exc)
                await asyncio.sleep(delay)
        self._healthy = True
        from signaling.cluster.ledger import SessionLedger  # loaded with the ledger only

        self._ledger = SessionLedger(
            self._redis, prefix=self.prefix, node_id=node_id, op_timeout=self.op_timeout,
            ttl=self.session_ttl, maxlen=self.replay_maxlen, inbox_maxlen=self.inbox_maxlen,
            durable=self.durable,
        )
        self._ledger.start()
        self._tasks.spawn(self._read_loop(), name=f"redis-inbox:{node_id}")

    async def close(self) -> None:
        """Stop the reader and release connections; this node's ``alive`` key and inbox go too.

        Idempotent. Members still held are left to expire with the node (see :meth:`reap`); the
        hub removes its members before closing the backend.
        """
        if self._closed:
            return
        self._closed = True
        self._healthy = False
        if self._ledger is not None:
            await self._ledger.close(self.op_timeout)
        await self._tasks.close()
        node = self._node_id
        try:
            if node is not None:
                await bounded(self._redis.delete(self.alive_key(node), self.inbox_key(node)), self.op_timeout, "close")
        except BackendUnavailable as exc:
            log.warning("redis backend of node %s: could not unregister: %s", node, exc)
        finally:
            self._deliver = None
            await self._reader_redis.aclose()
            await self._redis.aclose()

    async def ready(self) -> bool:
        """True when started, the reader is in sync, the session ledger can write (a demoted
        primary refuses writes with READONLY: that counts as unavailable) and Redis answers a
        PING in time."""
        if self._deliver is None or not self._healthy:
            return False
        if self._ledger is not None and not self._ledger.working():
            return False
        try:
            return bool(await bounded(self._redis.ping(), self.op_timeout, "ping"))
        except BackendUnavailable:
            return False

    # -- membership -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        # A closed client would quietly open new connections that nothing ever closes.
        if self._closed:
            raise BackendUnavailable("backend closed")

    @contextlib.asynccontextmanager
    async def _membership_change(self) -> AsyncIterator[None]:
        """Hold the membership lock; waiting for it counts against ``op_timeout`` too."""
        self._check_open()
        try:
            async with asyncio.timeout(self.op_timeout):
                await self._membership.acquire()
        except TimeoutError as exc:
            raise BackendUnavailable("membership changes are stuck behind a slow redis") from exc
        try:
            yield
        finally:
            self._membership.release()

    async def add_member(self, member: Member, *, max_members: int | None = None) -> list[Member] | None:
        await self._settle()  # the members a joiner is told about must be complete
        async with self._membership_change():
            try:
                reply = await bounded(
                    self._add(
                        keys=[self._key("room", member.room), self._key("peers"), self._key("rooms"), self._key("joinseq")],
                        args=[
                            member.peer_id,
                            member_json(member),
                            -1 if max_members is None else max_members,
                            member.room,
                            self._key("node-peers", ""),
                            self._key("member-nodes"),
                        ],
                    ),
                    self.op_timeout,
                    "add_member",
                )
            except BackendUnavailable:
                self._dirty = True  # it may have been applied: the next resync decides
                raise
            if reply is None:
                return None
            join_seq, before = reply
            self._local[member.peer_id] = (member, int(join_seq))
            return members_in_join_order(before)

    async def remove_member(self, room: str, peer_id: str) -> list[Member] | None:
        async with self._membership_change():
            mine = self._local.get(peer_id)
            if mine is not None and mine[0].room == room:
                # Forget it first: if Redis misses the removal, the next resync removes it there.
                del self._local[peer_id]
            try:
                rest = await bounded(
                    self._remove(
                        keys=[self._key("room", room), self._key("peers"), self._key("rooms")],
                        args=[peer_id, room, self._key("node-peers", ""), self._key("member-nodes"), self._node_id or ""],
                    ),
                    self.op_timeout,
                    "remove_member",
                )
            except BackendUnavailable:
                self._dirty = True
                raise
        if rest is None:
            return None
        if await self._settle():
            # The others' nodes were still writing their members back: read the room again.
            return [m for m in await self.members(room) if m.peer_id != peer_id]
        return members_in_join_order(rest)

    async def members(self, room: str) -> list[Member]:
        self._check_open()
        await self._settle()
        raws = await bounded(self._redis.hvals(self._key("room", room)), self.op_timeout, "members")
        return members_in_join_order(cast("list[str]", raws))

    async def member(self, peer_id: str) -> Member | None:
        self._check_open()
        raw = await bounded(self._redis.hget(self._key("peers"), peer_id), self.op_timeout, "member")
        return None if raw is None else parse_member(cast(str, raw))[1]

    async def rooms(self) -> dict[str, int]:
        self._check_open()
        flat = await bounded(self._rooms(keys=[self._key("rooms")], args=[self._key("room", "")]), self.op_timeout, "rooms")
        return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}

    # -- delivery -------------------------------------------------------------------------------

    async def send(
        self, peer_id: str, message: dict[str, Any], *, origin: tuple[str, int] | None = None, room: str | None = None,
        once: str | None = None,
    ) -> bool:
        """Deliver ``message`` to ``peer_id``; False if no node holds that peer.

        While the cluster resyncs after Redis lost data, a peer that is not (yet) in Redis is
        waited for (bounded by twice ``resync_window``) rather than reported unknown: its node
        may not have written it back yet. With ``once``, a send repeated under the same key
        (within ``session_ttl``) is not delivered again: retries of one notification are
        exactly once.

        Every message goes through the holder's inbox stream, this node's own included, so a
        resume on another node finds what this node had not stamped yet. With ``origin``
        (sender session id, its cseq) the sender's ``last_cseq`` advances atomically with the
        append: a duplicate returns True without sending; :class:`SessionMoved` means another
        node owns the sender's session now.

        Raises :class:`BackendUnavailable` when Redis does not confirm the append in time; the
        message was then delivered at most once (never retried here).
        """
        self._check_open()
        node_id = self._node_id
        if self._deliver is None or node_id is None:
            return False
        payload = json.dumps(message, separators=(",", ":"))
        sender, cseq = origin if origin is not None else ("", 0)
        keys = [self._key("peers"), self._key("sess", sender) if sender else self._key("none"),
                self._key("resync-until"), self._key("reaped", node_id)]
        args: list[str | int] = [peer_id, payload, node_id, self._key("inbox", ""), self.inbox_maxlen,
                round(self.inbox_ttl * 1000), cseq, room or "", self._key("once", once) if once else "",
                round(self.session_ttl * 1000)]
        # Durable before confirmed: the sender's cseq is confirmed once this returns.
        node = await send_settled(
            lambda: self._send_batcher.call(keys, args),
            op_timeout=self.op_timeout + self.durable.timeout, patience=2 * self.resync_window,
        )
        if node == "moved":
            raise SessionMoved(sender)
        if node == "reaped":
            # The cluster reaped this node while it was away: resync at once (which fences it).
            self._dirty = True
            raise BackendUnavailable("this node was reaped while it was away; fencing")
        return node is not None

    # -- dead nodes -----------------------------------------------------------------------------

    async def reap(self, grace: float = 0.0) -> list[Member]:
        """Remove the members of every node dead for ``grace`` seconds or more; return them.

        Any node may call this (periodically, e.g. every ``alive_interval``); the script re-checks
        liveness, so a node that came back in between keeps its members. With a grace period the
        dead node's clients can resume on another node first (their membership moves with them).
        The caller tells the rooms (``peer-left``): the backend does not speak the protocol.
        """
        self._check_open()
        nodes = await bounded(self._redis.smembers(self._key("member-nodes")), self.op_timeout, "reap")
        removed: list[Member] = []
        for node in sorted(cast("set[str]", nodes)):
            raws = await bounded(
                self._reap(
                    keys=[
                        self.alive_key(node),
                        self._key("node-peers", node),
                        self._key("peers"),
                        self._key("rooms"),
                        self._key("member-nodes"),
                        self.inbox_key(node),
                        self._key("dead-since", node),
                        self._key("reaped", node),
                    ],
                    args=[node, self._key("room", ""), round(grace * 1000), round(self.tombstone_ttl * 1000)],
                ),
                self.op_timeout,
                "reap",
            )
            removed.extend(members_in_join_order(raws))
        return removed

    # -- sessions (cross-node resume) -----------------------------------------------------------

    def session_ledger(self) -> SessionLedger | None:
        return self._ledger

    def adopt(self, member: Member) -> None:
        """A member moved to this node (its session resumed here): resyncs keep it here."""
        self._local[member.peer_id] = (member, 0)

    def forget(self, peer_id: str) -> None:
        """A member moved away: this node must not write it back on a resync."""
        self._local.pop(peer_id, None)

    # -- the reader -----------------------------------------------------------------------------

    async def _sync(self) -> None:
        """Bring Redis in line with this node: members, liveness, stream position.

        If the cluster reaped this node while it was away (stalled, or cut off from Redis for
        longer than the reaping grace), its members stay gone: it forgets them and hands their
        peer ids to the hub (control entry ``reaped``), which ends their sessions.
        """
        node = self._node_id
        assert node is not None
        reaped: list[str] | None = None
        async with self._membership_change():
            self._dirty = False
            mine = [member_json(m, j) for m, j in self._local.values() if m.node_id == node]
            try:
                reply = await bounded(
                    self._resync(
                        keys=[
                            self._key("node-peers", node),
                            self._key("peers"),
                            self._key("rooms"),
                            self._key("member-nodes"),
                            self._key("joinseq"),
                            self._key("resync-until"),
                            self._key("reaped", node),
                            self.alive_key(node),
                        ],
                        args=[node, self._key("room", ""), round(self.resync_window * 1000), round(self.alive_ttl * 1000),
                              "0" if self._synced_once else "1", *mine],
                    ),
                    self.op_timeout,
                    "resync",
                )
            except BackendUnavailable:
                self._dirty = True
                raise
            self._synced_once = True
            if reply[0] == "reaped":
                reaped = [peer for peer, (m, _j) in self._local.items() if m.node_id == node]
                self._local.clear()
        if reaped is not None:
            log.error("redis backend of node %s: the cluster reaped this node while it was away; ending its %d sessions",
                      node, len(reaped))
            if self.control is not None:
                try:
                    await self.control({"c": "reaped", "peers": " ".join(reaped)})
                except Exception:
                    log.exception("redis backend: fencing after reaping failed")
        newest = await bounded(self._reader_redis.xrevrange(self.inbox_key(node), count=1), self.op_timeout, "xrevrange")
        newest_id = cast("str", newest[0][0]) if newest else None
        if self._last_id is None:
            # First start: whatever is there was sent to an earlier incarnation of this node id.
            self._last_id = newest_id or "0-0"
        elif newest_id is None or stream_id(newest_id) < stream_id(self._last_id):
            # The stream is gone or was recreated (Redis restarted empty, inbox expired, this node
            # was reaped): every entry in it is new to us.
            self._last_id = "0-0"

    async def _settle(self) -> bool:
        """Wait (bounded by twice ``resync_window``) while the cluster resyncs after Redis lost
        data, so membership read now is complete; True if it had to wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * self.resync_window
        waited = False
        while True:
            left = int(await bounded(self._unsettled(keys=[self._key("resync-until")]), self.op_timeout, "settle"))
            if left == 0 or loop.time() >= deadline:
                return waited
            waited = True
            pause = left / 1000 if left > 0 else self.alive_interval / 4
            await asyncio.sleep(max(0.001, min(pause, deadline - loop.time())))

    async def _touch_alive(self) -> bool:
        """Refresh the ``alive`` key if it still exists (``SET XX``); False if it was gone."""
        assert self._node_id is not None
        done = await bounded(
            self._reader_redis.set(self.alive_key(self._node_id), "1", px=round(self.alive_ttl * 1000), xx=True),
            self.op_timeout,
            "alive",
        )
        return bool(done)

    async def _read_loop(self) -> None:
        node = self._node_id
        assert node is not None
        loop = asyncio.get_running_loop()
        inbox = self.inbox_key(node)
        next_alive = loop.time() + self.alive_interval
        need_sync = False
        backoff = self._backoff
        backoff.connected(loop.time())
        # ``while not closed`` rather than ``while True``: on Python 3.11, redis-py's internal
        # ``asyncio.wait_for``/``timeout`` can swallow a cancellation that races a completing
        # call, and ``close()`` must still end this loop within one XREAD block.
        while not self._closed:
            try:
                if need_sync or self._dirty:
                    await self._sync()
                    need_sync = False
                    if not self._healthy:
                        log.info("redis backend of node %s: reconnected and resynced", node)
                    self._healthy = True
                    backoff.connected(loop.time())
                    next_alive = loop.time() + self.alive_interval
                elif loop.time() >= next_alive:
                    next_alive = loop.time() + self.alive_interval
                    if not await self._touch_alive():
                        # Our key vanished while we were connected: Redis restarted empty (or
                        # failed over) between two calls, or we were reaped. Resync at once.
                        log.warning("redis backend of node %s: alive key vanished; resyncing", node)
                        need_sync = True
                        continue
                assert self._last_id is not None
                block_ms = max(1, round(min(self.block, max(0.0, next_alive - loop.time())) * 1000))
                reply = await bounded(
                    self._reader_redis.xread({inbox: self._last_id}, count=self.read_count, block=block_ms),
                    self.block + self.op_timeout,
                    "xread",
                )
            except BackendUnavailable as exc:
                if self._healthy:
                    log.warning("redis backend of node %s: lost redis: %s", node, exc)
                    backoff.disconnected(loop.time())
                self._healthy = False
                need_sync = True
                await asyncio.sleep(backoff.next_delay())
                continue
            for _stream, entries in cast("list[tuple[str, list[tuple[str, dict[str, str]]]]]", reply or []):
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    await self._deliver_entry(entry_id, fields)

    async def _deliver_entry(self, entry_id: str, fields: dict[str, str]) -> None:
        deliver = self._deliver
        if deliver is None:
            return
        if "c" in fields:
            if self.control is not None:
                try:
                    await self.control(fields)
                except Exception:
                    log.exception("redis backend: control entry %r failed", fields)
            return
        try:
            peer_id, message = fields["p"], json.loads(fields["m"])
        except (KeyError, ValueError):
            log.error("redis backend: malformed inbox entry %r dropped", fields)
            return
        try:
            await deliver(peer_id, message, entry_id)
        except Exception:
            # One bad delivery must not stop this node's inbox; the failure is logged loudly.
            log.exception("redis backend: delivery to peer %s failed", peer_id)


class PeerSender:
    """Sends messages to peers of a cluster from a process that holds no sessions (an SFU node).

    A message goes to whichever signaling node holds the peer, exactly as a signaling node's own
    ``send`` does, so it is ordered with everything else that peer receives from this sender.
    Call :meth:`send` for one peer from one task at a time (an emitter queue): that is what keeps
    this sender's messages to the peer in order.
    """

    def __init__(self, url: str, *, key_prefix: str = "sb:", sender_id: str = "", op_timeout: float = 2.0,
                 inbox_maxlen: int = 10_000, inbox_ttl: float = 300.0, resync_patience: float = 12.0) -> None:
        self.prefix = key_prefix
        self.sender_id = sender_id
        self.op_timeout = op_timeout
        self.inbox_maxlen = inbox_maxlen
        self.inbox_ttl = inbox_ttl
        #: How long a send waits for a peer unknown while the cluster resyncs (see RedisBackend).
        self.resync_patience = resync_patience
        self._redis = make_client(url, op_timeout=op_timeout)
        self._send = self._redis.register_script(_SEND)

    async def send(self, peer_id: str, message: dict[str, Any]) -> bool:
        """Deliver ``message`` to ``peer_id``; False if no node holds it.

        Raises :class:`BackendUnavailable` when Redis does not confirm in time (delivered at most
        once then).
        """
        payload = json.dumps(message, separators=(",", ":"))
        node = await send_settled(
            lambda: self._send(
                keys=[self.prefix + "peers", self.prefix + "none", self.prefix + "resync-until", self.prefix + "none"],
                args=[peer_id, payload, f"!{self.sender_id}", self.prefix + "inbox:", self.inbox_maxlen,
                      round(self.inbox_ttl * 1000), 0, "", "", 0],
            ),
            op_timeout=self.op_timeout, patience=self.resync_patience,
        )
        return node is not None

    async def close(self) -> None:
        await self._redis.aclose()
