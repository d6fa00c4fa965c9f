"""The backend interface the hub talks to.

It is async and node-aware so that the Redis implementation fits without changing the hub: every
member records the node that holds its session, and delivery goes *to a peer id*, the backend
finding the node. The memory backend is one node whose "bus" is a direct call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# Re-exported: the backends raise these, the hub reads what became of a ledger write.
from signaling.cluster.durable import Written as Written
from signaling.core.errors import BackendUnavailable as BackendUnavailable
from signaling.core.errors import SessionMoved as SessionMoved

if TYPE_CHECKING:  # redis-py is loaded by cluster nodes only
    from signaling.cluster.ledger import SessionLedger

#: Called by the backend on the node that holds ``peer_id`` with a message for it and the id of
#: the inbox entry it came in ("" when the backend has no inbox: memory).
Delivery = Callable[[str, dict[str, Any], str], Awaitable[None]]
#: Called with a control entry of this node's inbox (cluster backends): ``{"c": "moved", "s": ...}``.
Control = Callable[[dict[str, str]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Member:
    peer_id: str
    name: str
    room: str
    node_id: str


class Backend(ABC):
    #: True for backends shared by several nodes (members of dead nodes must be reaped).
    clustered = False

    @abstractmethod
    async def start(self, node_id: str, deliver: Delivery) -> None:
        """Begin delivering messages for peers of this node to ``deliver``."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ready(self) -> bool:
        """True while the backend can serve requests (``/readyz``)."""

    @abstractmethod
    async def add_member(self, member: Member, *, max_members: int | None = None) -> list[Member] | None:
        """Add ``member`` to its room; return the members that were there before it.

        Returns None, adding nothing, when the room already holds ``max_members``.
        """

    @abstractmethod
    async def remove_member(self, room: str, peer_id: str) -> list[Member] | None:
        """Remove a member; return the members left, or None if it was not there."""

    @abstractmethod
    async def members(self, room: str) -> list[Member]: ...

    @abstractmethod
    async def member(self, peer_id: str) -> Member | None: ...

    @abstractmethod
    async def rooms(self) -> dict[str, int]:
        """Every room with its member count."""

    @abstractmethod
    async def send(
        self, peer_id: str, message: dict[str, Any], *, origin: tuple[str, int] | None = None, room: str | None = None,
        once: str | None = None,
    ) -> bool:
        """Deliver ``message`` to ``peer_id`` on whichever node holds it; False if unknown (or,
        with ``room``, a member of another room: checked in the same step as the delivery).

        ``origin`` is (sender session id, cseq) for a relayed client message: a cluster backend
        records the cseq atomically with the delivery (exactly once across node deaths).
        ``once`` names a notification that is retried until it is confirmed (``peer-left``): a
        cluster backend delivers it at most once per key, so the retries are exactly once.
        """

    async def reap(self, grace: float = 0.0) -> list[Member]:
        """Remove and return the members of nodes dead for ``grace`` s (cluster backends only)."""
        return []

    #: Called with control entries of this node's inbox (cluster backends); set by the hub.
    control: Control | None = None

    def session_ledger(self) -> SessionLedger | None:
        """Where sessions are written for cross-node resume; None: sessions live and die here."""
        return None

    def adopt(self, member: Member) -> None:
        """A member whose session resumed on this node from another one."""
        return None  # one-node backends never see one

    def forget(self, peer_id: str) -> None:
        """A member whose session resumed on another node."""
        return None
