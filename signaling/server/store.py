"""Where a node's sessions are kept, as a strategy of the hub (:class:`SessionStore`).

The hub stamps every session message; the store decides when the stamped frame may reach the
client and how a session the node does not hold is resumed:

* :class:`ImmediateStore` (the memory backend): sessions live and die with the process, so a
  frame is shown at once and a session this node does not hold is unknown.
* ``signaling.server.ledger_store.LedgerStore`` (a Redis cluster, loaded only there): every frame is
  written to the session ledger first and shown once it is there, and a session another node
  held is taken over from the ledger (``signaling.server.takeover``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from signaling.core.codes import Err
from signaling.core.errors import ResumeRefusal, ResumeRefused
from signaling.core.protocol import Join
from signaling.core.session import Stamped
from signaling.server.live import Live

if TYPE_CHECKING:
    from signaling.runtime.tasks import TaskRegistry
    from signaling.server.hub import Hub


class SessionStore(Protocol):
    def start(self, tasks: TaskRegistry) -> None:
        """The backend has started: take what it provides, spawn background work on ``tasks``."""
        ...

    def joined(self, live: Live) -> None:
        """A new session: keep what a resume elsewhere needs besides its frames."""
        ...

    def stamped(self, live: Live, stamped: Stamped, source: str) -> None:
        """A frame was stamped: call ``Hub.show`` once it may reach the client (``source``: the
        inbox entry it came from, in a cluster)."""
        ...

    def record(self, live: Live) -> None:
        """The session's acks (or its resume) moved on: record it."""
        ...

    def drop(self, session_id: str) -> None:
        """The session ended here: forget it."""
        ...

    async def flushed(self) -> None:
        """Wait (bounded) until every stamped frame may reach its client."""
        ...

    async def take_over(self, join: Join) -> tuple[Live, str]:
        """Resume a session this node does not hold: the session (registered in the hub's table,
        its pending messages stamped) and the node that held it. Raises :class:`ResumeRefused`."""
        ...

    def unclaimed(self, peer_id: str, message: dict[str, Any], source: str) -> None:
        """A delivery for a peer this node does not hold (one being taken over, perhaps)."""
        ...

    def moved(self, live: Live) -> None:
        """The session resumed on another node: let it go here without ending it."""
        ...

    async def control(self, fields: dict[str, str]) -> None:
        """A control entry of this node's inbox (cluster backends)."""
        ...


class ImmediateStore:
    """Sessions in this process only: a stamped frame is shown now; nothing is recorded."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def start(self, tasks: TaskRegistry) -> None:
        pass

    def joined(self, live: Live) -> None:
        pass

    def stamped(self, live: Live, stamped: Stamped, source: str) -> None:
        self.hub.show(live, stamped)

    def record(self, live: Live) -> None:
        pass

    def drop(self, session_id: str) -> None:
        pass

    async def flushed(self) -> None:
        pass

    async def take_over(self, join: Join) -> tuple[Live, str]:
        raise ResumeRefused(ResumeRefusal.UNKNOWN, "unknown or expired session")

    def unclaimed(self, peer_id: str, message: dict[str, Any], source: str) -> None:
        pass

    def moved(self, live: Live) -> None:
        # Only a cluster backend moves sessions; should one ever claim it, the session ends loudly.
        self.hub.lose(live, "session moved without a cluster", code=Err.INTERNAL, reason="internal-error")

    async def control(self, fields: dict[str, str]) -> None:
        pass
