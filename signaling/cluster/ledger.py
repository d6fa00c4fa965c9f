"""Sessions in Redis: the durable copy that lets a client resume on another node.

Key layout (``p`` is the backend's key prefix)::

    p sess:<session>   hash    owner node, meta JSON, token hash, last_seq, acked, last_cseq,
                               rcseq, src (last inbox entry stamped into the session)
    p mbox:<session>   stream  the session's stamped frames, entry id ``<seq>-1``; trimmed to the
                               acknowledged seq, MAXLEN ~ replay bound

Both keys expire ``ttl`` after the last write; the owner refreshes its sessions' keys well before
that, so only sessions of dead nodes expire (and the reaper deletes those first, after the grace
period).

**Who is authoritative.** While a node owns a session, its in-memory
:class:`~signaling.core.session.Session` stamps every message; the frame reaches the socket only after
it is in ``mbox`` (:meth:`SessionLedger.put` queues it, one writer task pipelines the writes and
then sends, in order). So whatever a client has seen is in Redis, and a node killed with
``kill -9`` loses only frames no client saw. Every message that comes from *outside* the node (a
peer's signal, peer events, SFU messages) arrives through the owner's inbox stream, and the write
that puts its frame into ``mbox`` records the inbox entry id (``src``) atomically with it; a
resume elsewhere takes the entries after ``src`` from the old owner's inbox and stamps them anew.
Nothing accepted is lost, nothing is stamped twice.

**Fencing.** Every write checks ``owner``; a resume moves ``owner`` atomically with reading the
replay. A write of the previous owner that lands afterwards is refused, and that node drops the
session (the client is on another node). A client's ``cseq`` for ``signal`` is recorded by the
relay script (as ``rcseq``) in the same step that appends the signal to the receiver's node inbox,
so a resend after a node died is recognised as a duplicate (exactly once). Other requests reach
``last_cseq`` with the next frame write once their handling finished (at least once: the SFU
answers a repeated publish again). A resume confirms the larger of the two.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis

from signaling.cluster.batch import Call, run_scripts
from signaling.cluster.durable import ReplicaWait, Written
from signaling.cluster.redis_io import bounded
from signaling.core.backoff import Backoff
from signaling.core.errors import BackendUnavailable, ResumeRefusal, ResumeRefused
from signaling.runtime.tasks import OwnerKind, TaskRegistry

log = logging.getLogger(__name__)


def token_hash(token: str) -> str:
    """What Redis keeps instead of the resume token: a leaked dump must not resume sessions."""
    return hashlib.sha256(token.encode()).hexdigest()


# Append stamped frames of one session. KEYS: sess hash, mbox.
# ARGV: owner node, meta JSON, token hash, last_cseq, src ('' none), ttl ms, maxlen, acked,
#       then seq, frame pairs (possibly none: a cseq/ack-only update).
# Returns 1, or 0 when another node owns the session (fenced).
_PUT = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[1] then return 0 end
if not owner then
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'meta', ARGV[2], 'tok', ARGV[3], 'last_seq', 0,
             'acked', 0, 'last_cseq', 0, 'src', '0-0')
end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_seq'))
for i = 9, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if seq > last then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], seq .. '-1', 'f', ARGV[i + 1])
    last = seq
  end
end
redis.call('HSET', KEYS[1], 'last_seq', last)
if tonumber(ARGV[4]) > tonumber(redis.call('HGET', KEYS[1], 'last_cseq')) then
  redis.call('HSET', KEYS[1], 'last_cseq', ARGV[4])
end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'src', ARGV[5]) end
local acked = tonumber(ARGV[8])
if acked > tonumber(redis.call('HGET', KEYS[1], 'acked')) then
  redis.call('HSET', KEYS[1], 'acked', acked)
  redis.call('XTRIM', KEYS[2], 'MINID', (acked + 1) .. '-0')
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 1
"""

# Delete a session the owner ended. KEYS: sess hash, mbox. ARGV: owner node.
_DROP = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""

# Take a session over for a resume on this node.
# KEYS: sess hash, mbox, peers index. ARGV: new owner, token hash, client's last_seq, key prefix,
#       ttl ms, room the client names, session id, inbox maxlen.
# Returns {'ok', old owner, meta, last_cseq, frames (flat seq, frame...), pending
# (flat inbox payloads)} or {'refused', reason code (ResumeRefusal), message}.
_TAKE = """
local h = KEYS[1]
local owner = redis.call('HGET', h, 'owner')
if not owner then return {'refused', 'unknown', 'unknown or expired session'} end
if redis.call('HGET', h, 'tok') ~= ARGV[2] then return {'refused', 'bad-token', 'bad resume token'} end
local last_seq = tonumber(redis.call('HGET', h, 'last_seq'))
local acked = tonumber(redis.call('HGET', h, 'acked'))
local client = tonumber(ARGV[3])
if client > last_seq then return {'refused', 'ahead', 'last_seq beyond the last sent seq'} end
if client < acked then return {'refused', 'behind', 'last_seq below the acknowledged seq'} end
local meta = cjson.decode(redis.call('HGET', h, 'meta'))
if meta['room'] ~= ARGV[6] then return {'refused', 'unknown', 'unknown or expired session'} end
local peer_id = meta['peer']
local raw = redis.call('HGET', KEYS[3], peer_id)
if not raw then return {'refused', 'ended', 'session ended'} end
local entries = redis.call('XRANGE', KEYS[2], '(' .. client .. '-1', '+')
local frames = {}
local expect = client + 1
for _, e in ipairs(entries) do
  local seq = tonumber(string.match(e[1], '^(%d+)'))
  if seq ~= expect then return {'refused', 'replay-incomplete', 'replay incomplete'} end
  frames[#frames + 1] = seq
  frames[#frames + 1] = e[2][2]
  expect = seq + 1
end
if expect ~= last_seq + 1 then return {'refused', 'replay-incomplete', 'replay incomplete'} end
-- What the previous owner (possibly this very node, restarted) received for the peer but did not
-- stamp: its inbox after the last entry it stamped into the session.
local pending = {}
local inbox = ARGV[4] .. 'inbox:' .. owner
for _, e in ipairs(redis.call('XRANGE', inbox, '(' .. redis.call('HGET', h, 'src'), '+')) do
  local f = e[2]
  local peer, payload = nil, nil
  for i = 1, #f, 2 do
    if f[i] == 'p' then peer = f[i + 1] elseif f[i] == 'm' then payload = f[i + 1] end
  end
  if peer == peer_id and payload then pending[#pending + 1] = payload end
end
if owner ~= ARGV[1] then
  redis.call('XADD', inbox, 'MAXLEN', '~', ARGV[8], '*', 'c', 'moved', 's', ARGV[7])
  -- Membership follows the session: new sends go to this node's inbox from now on.
  local m = cjson.decode(raw)
  m['node_id'] = ARGV[1]
  local moved = cjson.encode(m)
  redis.call('HSET', KEYS[3], peer_id, moved)
  redis.call('HSET', ARGV[4] .. 'room:' .. m['room'], peer_id, moved)
  redis.call('SREM', ARGV[4] .. 'node-peers:' .. owner, peer_id)
  redis.call('SADD', ARGV[4] .. 'node-peers:' .. ARGV[1], peer_id)
  redis.call('SADD', ARGV[4] .. 'member-nodes', ARGV[1])
  redis.call('HSET', h, 'owner', ARGV[1])
end
-- From here on ``src`` names entries of this node's inbox: everything after its newest entry.
local newest = redis.call('XREVRANGE', ARGV[4] .. 'inbox:' .. ARGV[1], '+', '-', 'COUNT', 1)
redis.call('HSET', h, 'src', newest[1] and newest[1][1] or '0-0')
redis.call('HSET', h, 'acked', client)
redis.call('XTRIM', KEYS[2], 'MINID', (client + 1) .. '-0')
redis.call('PEXPIRE', h, ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local cseq = math.max(tonumber(redis.call('HGET', h, 'last_cseq')), tonumber(redis.call('HGET', h, 'rcseq') or '0'))
return {'ok', owner, redis.call('HGET', h, 'meta'), cseq, frames, pending}
"""


@dataclass(frozen=True, slots=True)
class Taken:
    """A session taken over from Redis for a resume on this node."""

    previous_owner: str
    meta: dict[str, Any]
    last_cseq: int
    #: (seq, frame) after the client's ``last_seq``, oldest first.
    frames: list[tuple[int, str]]
    #: Messages the previous owner received for the peer but never stamped, oldest first.
    pending: list[dict[str, Any]]


@dataclass(slots=True)
class Put:
    session_id: str
    meta: str
    tok: str
    frames: list[tuple[int, str]] = field(default_factory=list)
    last_cseq: int = 0
    src: str = ""
    acked: int = 0
    drop: bool = False
    #: Called once the write is settled (:class:`Written`), in queue order.
    done: Callable[[Written], None] | None = None


def group_writes(batch: list[Put]) -> list[list[int]]:
    """Indexes of ``batch`` grouped into script calls: a session's consecutive writes share one;
    a drop is a call of its own and closes the session's group."""
    groups: list[list[int]] = []
    open_group: dict[str, list[int]] = {}
    for index, item in enumerate(batch):
        group = open_group.get(item.session_id)
        if item.drop or group is None:
            group = [index]
            groups.append(group)
            if item.drop:
                open_group.pop(item.session_id, None)
            else:
                open_group[item.session_id] = group
        else:
            group.append(index)
    return groups


class SessionLedger:
    """This node's writes of session state to Redis, in order, and resumes from it.

    :meth:`put` never blocks: the hub's stamping path stays synchronous. One writer task takes
    everything queued, groups it per session and writes each group with one script call (a
    pipeline per batch), then runs the callbacks, which send the frames to the sockets. While
    Redis is unreachable the writer keeps its batch and retries with backoff: frames wait rather
    than reach a client before they are durable. The queue is bounded; :meth:`put` returns False
    when it is full and the hub treats that session as lost (loudly), as on a replay overflow.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        node_id: str,
        op_timeout: float,
        ttl: float,
        maxlen: int,
        inbox_maxlen: int = 10_000,
        max_queued: int = 100_000,
        durable: ReplicaWait | None = None,
    ) -> None:
        """
        :param durable: after each batch, wait for replicas (``durable.py``); frames reach the
            socket only then, so a failover cannot lose a frame a client saw. A batch that did not
            reach them is written again (the script is idempotent) and its frames keep waiting.
        """
        self._redis = redis
        self.durable = durable or ReplicaWait(0, 1.0)
        self.prefix = prefix
        self.node_id = node_id
        self.op_timeout = op_timeout
        self.ttl = ttl
        self.maxlen = maxlen
        self.inbox_maxlen = inbox_maxlen
        self.max_queued = max_queued
        self._put_script = redis.register_script(_PUT)
        self._drop_script = redis.register_script(_DROP)
        self._take_script = redis.register_script(_TAKE)
        self._queue: list[Put] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks = TaskRegistry("session-ledger", OwnerKind.LEDGER)
        self._backoff = Backoff(base=0.05, cap=1.0)
        self._task: asyncio.Task[None] | None = None
        self.healthy = True

    def _key(self, kind: str, session_id: str) -> str:
        return f"{self.prefix}{kind}:{session_id}"

    def start(self) -> None:
        self._task = self._tasks.spawn(self._writer(), name=f"ledger:{self.node_id}")

    async def close(self, deadline: float = 2.0) -> None:
        """Flush what is queued (up to ``deadline`` s), then stop the writer."""
        try:
            async with asyncio.timeout(deadline):
                await self.flushed()
        except TimeoutError:
            log.warning("session ledger: %d writes still queued at close", len(self._queue))
        await self._tasks.close()

    async def flushed(self) -> None:
        """Wait until every queued write is done (tests, drain)."""
        await self._idle.wait()

    def put(self, item: Put) -> bool:
        if len(self._queue) >= self.max_queued:
            return False
        self._queue.append(item)
        self._idle.clear()
        self._wake.set()
        return True

    def frames(
        self, session_id: str, *, meta: str, tok: str, frames: list[tuple[int, str]], last_cseq: int,
        acked: int, src: str = "", done: Callable[[Written], None] | None = None,
    ) -> bool:
        return self.put(Put(session_id, meta, tok, frames, last_cseq, src, acked, done=done))

    def drop(self, session_id: str) -> bool:
        return self.put(Put(session_id, "", "", drop=True))

    def working(self) -> bool:
        """False while writes fail (Redis unreachable) or if the writer task is gone: the node
        can then show clients nothing new, so it must not look ready."""
        return self.healthy and self._task is not None and not self._task.done()

    async def _writer(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            batch, self._queue = self._queue, []
            results = await self._write_until_settled(batch)
            for item, result in zip(batch, results, strict=True):
                if item.done is not None:
                    try:
                        item.done(result)
                    except Exception:
                        log.exception("session ledger: callback of session %s failed", item.session_id)

    async def _write_until_settled(self, batch: list[Put]) -> list[Written]:
        """Write ``batch``, retrying while Redis is unavailable; one result per item.

        Nothing a write carries can stop the writer: a write that cannot be encoded fails on its
        own (:attr:`Written.FAILED`), and any other unexpected error fails this batch only (each
        session in it is ended loudly by its callback), logged with its traceback.
        """
        while True:
            try:
                results = await self._write(batch)
                break
            except BackendUnavailable as exc:
                if self.healthy:
                    log.warning("session ledger of node %s: %s; retrying", self.node_id, exc)
                self.healthy = False
                await asyncio.sleep(self._backoff.next_delay())
            except Exception:
                log.exception("session ledger of node %s: a batch of %d writes failed", self.node_id, len(batch))
                return [Written.FAILED] * len(batch)
        if not self.healthy:
            log.info("session ledger of node %s: writing again", self.node_id)
            self.healthy = True
            self._backoff.attempt = 0
        return results

    def _args(self, items: list[Put], ttl: int) -> list[bytes | int]:
        """One script call's arguments, encoded here: a string that is not valid UTF-8 (a lone
        surrogate) raises for this group alone instead of inside redis-py's pipeline."""
        first = items[0]
        src = next((i.src for i in reversed(items) if i.src), "")
        args: list[str | int] = [
            self.node_id, first.meta, first.tok, max(i.last_cseq for i in items), src, ttl, self.maxlen,
            max(i.acked for i in items),
        ]
        for item in items:
            for seq, frame in item.frames:
                args += [seq, frame]
        return [a.encode("utf-8") if isinstance(a, str) else a for a in args]

    async def _write(self, batch: list[Put]) -> list[Written]:
        """Write a batch; one result per item, in order.

        Consecutive writes of one session become one script call (its frames in order, the
        highest cseq and ack, the last inbox id): under load most frames of a batch share a few
        sessions, and a script call costs far more than a frame. Sessions are independent, so
        only each session's own order matters.
        """
        groups = group_writes(batch)
        ttl = round(self.ttl * 1000)
        results = [Written.FAILED] * len(batch)
        sent: list[list[int]] = []
        calls: list[Call] = []
        for group in groups:
            first = batch[group[0]]
            keys = [self._key("sess", first.session_id), self._key("mbox", first.session_id)]
            if first.drop:
                calls.append((self._drop_script, keys, [self.node_id]))
                sent.append(group)
                continue
            try:
                args = self._args([batch[i] for i in group], ttl)
            except UnicodeError as exc:
                log.error("session ledger: session %s has a frame that cannot be stored (%s); ending it",
                          first.session_id, exc)
                continue
            calls.append((self._put_script, keys, args))
            sent.append(group)
        if not sent:
            return results
        # EVALSHA in one pipeline: no SCRIPT EXISTS round trip per batch (signaling/cluster/batch.py).
        replies = await run_scripts(
            self._redis, calls, durable=self.durable if self.durable.enabled else None,
            seconds=self.op_timeout * 2 + self.durable.timeout, what="ledger write",
        )
        for reply in replies:
            if isinstance(reply, BackendUnavailable):
                raise reply  # as before: the batch is retried (each write is idempotent by seq)
        for group, reply in zip(sent, replies, strict=True):
            for index in group:
                results[index] = Written.OK if int(reply) else Written.FENCED
        return results

    async def refresh(self, session_ids: list[str]) -> None:
        """Push the keys' expiry of sessions this node holds (called every ``ttl / 3``)."""
        if not session_ids:
            return
        ttl = round(self.ttl * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for sid in session_ids:
                pipe.pexpire(self._key("sess", sid), ttl)
                pipe.pexpire(self._key("mbox", sid), ttl)
            await bounded(pipe.execute(), self.op_timeout * 2, "ledger refresh")

    async def take(self, session_id: str, room: str, token: str, last_seq: int) -> Taken:
        """Move ``session_id`` to this node for a resume; raise :class:`ResumeRefused` if it cannot be."""
        reply = cast(
            "list[Any]",
            await bounded(
                self._take_script(
                    keys=[self._key("sess", session_id), self._key("mbox", session_id), self.prefix + "peers"],
                    args=[self.node_id, token_hash(token), last_seq, self.prefix, round(self.ttl * 1000), room, session_id,
                          self.inbox_maxlen],
                ),
                self.op_timeout,
                "take session",
            ),
        )
        if reply[0] != "ok":
            raise ResumeRefused(ResumeRefusal(str(reply[1])), str(reply[2]))
        _, previous, meta, last_cseq, flat, pending = reply
        frames = [(int(flat[i]), str(flat[i + 1])) for i in range(0, len(flat), 2)]
        return Taken(
            previous_owner=str(previous),
            meta=json.loads(meta),
            last_cseq=int(last_cseq),
            frames=frames,
            pending=[json.loads(p) for p in pending],
        )
