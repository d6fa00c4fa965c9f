"""Durable before confirmed: after a write that a client will be told about, wait for replicas.

Redis replicates asynchronously. A write the primary acknowledged and then lost in a failover
(its replica was promoted before the write reached it) is gone, although the client was told:
a frame it saw, a ``cseq`` it was confirmed. So with ``wanted > 0`` every session-ledger batch
and every relay is followed, on the same connection, by ``WAIT <n> <timeout>`` (the replication
stream is ordered, so a replica that has this write has every earlier write of every client as
well) and only then is the frame sent or the ``cseq`` confirmed.

``n`` is ``wanted`` or the number of replicas connected to the primary, whichever is smaller:
the writer appends ``ROLE`` to each batch and remembers the replica count. When the primary has
no replica at all (right after a failover of a primary + one replica, before the old primary
returns as a replica), there is nothing a failover could promote, so waiting would only stop the
cluster; writes go on undelayed and the count is logged. When replicas are connected but fewer
than ``n`` acknowledge within the timeout, the write counts as failed
(:class:`~signaling.backend.base.BackendUnavailable`): the ledger writes the batch again (its
script is idempotent) and frames keep waiting; a relay is refused, so the client resends it after
resuming, and the relay script recognises a resend of a write that did land (``rcseq``).

An operator who prefers "stop rather than run without a replica" sets ``min-replicas-to-write 1``
on the Redis servers (and should then run two replicas).
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from signaling.core.errors import BackendUnavailable

log = logging.getLogger(__name__)


class Written(enum.Enum):
    """What became of a queued write (passed to its ``done`` callback)."""

    #: It is in Redis: the frames may reach the client.
    OK = "ok"
    #: Another node owns the session now (it resumed there): this node must let it go.
    FENCED = "fenced"
    #: This write cannot be stored, ever (a frame that is not valid UTF-8, an argument that
    #: cannot be encoded): the session's stream has a hole, so the session must end. Other
    #: sessions are not affected.
    FAILED = "failed"


class ReplicaWait:
    """The ``WAIT`` step of one node, shared by its ledger writer and its relays."""

    def __init__(self, wanted: int, timeout: float) -> None:
        """:param wanted: replicas a write must reach before it is confirmed (0: do not wait).
        :param timeout: seconds one ``WAIT`` may block."""
        self.wanted = wanted
        self.timeout = timeout
        #: Replicas the primary reported in the last ``ROLE`` (optimistic until the first one).
        self.connected = wanted
        #: Writes confirmed without a replica (the primary had none): a failover now loses them.
        self.unreplicated = 0

    @property
    def enabled(self) -> bool:
        return self.wanted > 0

    def target(self) -> int:
        return min(self.wanted, self.connected)

    def add(self, pipe: Any) -> int:
        """Append ``WAIT`` (when there is a replica to wait for) and ``ROLE`` to a pipeline whose
        writes precede them; returns how many replies :meth:`check` must take off the end."""
        target = self.target()
        if target > 0:
            pipe.execute_command("WAIT", target, max(1, round(self.timeout * 1000)))
        pipe.execute_command("ROLE")
        return 2 if target > 0 else 1

    def check(self, replies: list[Any], count: int, what: str) -> None:
        """Take the ``count`` replies of :meth:`add` off the end of ``replies``; raise
        :class:`BackendUnavailable` unless the write reached enough replicas."""
        tail = [replies.pop() for _ in range(count)][::-1]
        role = tail[-1]
        if not role or role[0] != "master":
            raise BackendUnavailable(f"redis {what}: the server is not the primary any more (role {role[0] if role else '?'})")
        connected = len(role[2]) if len(role) > 2 and role[2] else 0
        if connected != self.connected:
            log.warning("redis %s: the primary has %d replica(s) connected (was %d)", what, connected, self.connected)
        self.connected = connected
        if count == 1:
            if connected == 0:
                self.unreplicated += 1
            return
        acked = int(tail[0])
        if acked >= min(self.wanted, connected):
            if acked == 0:
                self.unreplicated += 1
            return
        raise BackendUnavailable(
            f"redis {what}: {acked} of {min(self.wanted, connected)} replica(s) acknowledged within {self.timeout} s"
        )
