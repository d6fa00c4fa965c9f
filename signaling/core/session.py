"""The resumable session: sequence numbers, acknowledgements, replay and de-duplication. No I/O.

A session belongs to one joined participant and outlives its WebSocket. Every server→client
message of the session (except ``ping`` and the ``welcome`` of a resume, which are about the
connection, not the stream) gets the next ``seq`` and waits in a bounded replay buffer until the
client acknowledges it cumulatively. A client that resumes names the last ``seq`` it received and
gets exactly the messages after it, in order. The client's own state-changing messages carry
``cseq``; the session remembers the highest one processed so a resend after resume is dropped.
"""

from __future__ import annotations

import enum
import hmac
import secrets
from collections import deque
from dataclasses import dataclass

from signaling.core.errors import PeerError, ResumeRefusal, ResumeRefused
from signaling.core.protocol import JSON, encode


class ReplayOverflow(PeerError):
    """The replay buffer cannot hold another message: the session can no longer be resumed."""


class AckError(PeerError):
    """The client acknowledged a message the server never sent."""


def new_id(prefix: str) -> str:
    """A random, URL-safe identifier (96 bits) with a readable prefix."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"


def new_token() -> str:
    """An unguessable resume token (256 bits)."""
    return secrets.token_urlsafe(32)


class SessionState(enum.Enum):
    ATTACHED = "attached"
    DETACHED = "detached"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class Stamped:
    """A server message with its ``seq``, encoded once for both sending and replay."""

    seq: int
    frame: str


class ReplayBuffer:
    """Unacknowledged messages, bounded in count and in bytes."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._items: deque[Stamped] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def append(self, item: Stamped) -> None:
        size = len(item.frame)
        if len(self._items) >= self._max_messages or self._bytes + size > self._max_bytes:
            raise ReplayOverflow(
                f"replay buffer full ({len(self._items)} messages, {self._bytes} bytes unacknowledged)"
            )
        self._items.append(item)
        self._bytes += size

    def release_through(self, seq: int) -> int:
        """Drop every message with ``seq`` up to and including ``seq``; return how many."""
        released = 0
        while self._items and self._items[0].seq <= seq:
            self._bytes -= len(self._items.popleft().frame)
            released += 1
        return released

    def after(self, seq: int) -> list[Stamped]:
        return [item for item in self._items if item.seq > seq]


class Session:
    """One participant's stream state. Plain object; the hub drives it."""

    def __init__(
        self,
        *,
        room: str,
        name: str,
        max_messages: int,
        max_bytes: int,
        session_id: str | None = None,
        peer_id: str | None = None,
        token: str | None = None,
    ) -> None:
        self.id = session_id or new_id("s")
        self.peer_id = peer_id or new_id("p")
        self.room = room
        self.name = name
        self.token = token or new_token()
        self.state = SessionState.ATTACHED
        #: Highest ``seq`` stamped so far (0: none).
        self.last_seq = 0
        #: Highest ``seq`` the client acknowledged.
        self.acked_seq = 0
        #: Highest client ``cseq`` processed.
        self.last_cseq = 0
        self._replay = ReplayBuffer(max_messages, max_bytes)

    @classmethod
    def restore(
        cls,
        *,
        session_id: str,
        peer_id: str,
        room: str,
        name: str,
        token: str,
        acked_seq: int,
        last_cseq: int,
        frames: list[Stamped],
        max_messages: int,
        max_bytes: int,
    ) -> Session:
        """Rebuild a session another node held, from its durable copy (cross-node resume).

        ``frames`` are the unacknowledged messages after ``acked_seq``, consecutive and oldest
        first; raises :class:`ResumeRefused` if they have a hole or do not fit this node's replay
        bounds.
        """
        session = cls(room=room, name=name, max_messages=max_messages, max_bytes=max_bytes,
                      session_id=session_id, peer_id=peer_id, token=token)
        expected = acked_seq + 1
        for item in frames:
            if item.seq != expected:
                raise ResumeRefused(
                    ResumeRefusal.REPLAY_INCOMPLETE, f"replay gap: expected seq {expected}, got {item.seq}"
                )
            try:
                session._replay.append(item)
            except ReplayOverflow as exc:
                raise ResumeRefused(ResumeRefusal.REPLAY_OVERFLOW, str(exc)) from exc
            expected += 1
        session.acked_seq = acked_seq
        session.last_seq = expected - 1
        session.last_cseq = last_cseq
        return session

    def pending(self) -> list[Stamped]:
        """Every unacknowledged message, oldest first."""
        return self._replay.after(self.acked_seq)

    @property
    def unacked(self) -> int:
        return len(self._replay)

    @property
    def unacked_bytes(self) -> int:
        return self._replay.bytes

    def stamp(self, message: JSON) -> Stamped:
        """Give ``message`` the next ``seq``, encode it and keep it for replay.

        Raises :class:`ReplayOverflow` (and stamps nothing) when the buffer is full: the caller
        must end the session loudly rather than drop the message. A message that is not strict
        JSON raises :class:`~signaling.core.protocol.StrictJSONError`, also before anything is stamped.
        """
        seq = self.last_seq + 1
        stamped = Stamped(seq, encode({**message, "seq": seq}))
        self._replay.append(stamped)
        self.last_seq = seq
        return stamped

    def ack(self, seq: int) -> int:
        """Apply a cumulative ack; return how many buffered messages it freed."""
        if seq > self.last_seq:
            raise AckError(f"ack {seq} is beyond the last sent seq {self.last_seq}")
        if seq <= self.acked_seq:
            return 0
        self.acked_seq = seq
        return self._replay.release_through(seq)

    def accept_cseq(self, cseq: int) -> bool:
        """True if the client message numbered ``cseq`` is new; False for a duplicate."""
        if cseq <= self.last_cseq:
            return False
        self.last_cseq = cseq
        return True

    def retract_cseq(self, cseq: int, previous: int) -> None:
        """Un-accept ``cseq`` (its handling failed before taking effect): the client will resend
        it, and it must not be dropped as a duplicate. ``previous`` is ``last_cseq`` before it."""
        if self.last_cseq == cseq:
            self.last_cseq = previous

    def verify_token(self, token: str) -> bool:
        # surrogatepass: a token that is not valid Unicode is simply wrong, never an exception.
        return hmac.compare_digest(self.token.encode(), token.encode("utf-8", "surrogatepass"))

    def resume(self, token: str, last_seq: int) -> list[Stamped]:
        """Check a resume request and return the messages to replay, oldest first.

        ``last_seq`` doubles as an acknowledgement: the client has everything up to it.
        """
        if self.state is SessionState.ENDED:
            raise ResumeRefused(ResumeRefusal.ENDED, "session ended")
        if not self.verify_token(token):
            raise ResumeRefused(ResumeRefusal.BAD_TOKEN, "bad resume token")
        if last_seq > self.last_seq:
            raise ResumeRefused(
                ResumeRefusal.AHEAD, f"last_seq {last_seq} is beyond the last sent seq {self.last_seq}"
            )
        if last_seq < self.acked_seq:
            raise ResumeRefused(
                ResumeRefusal.BEHIND, f"last_seq {last_seq} is below the acknowledged seq {self.acked_seq}"
            )
        self.ack(last_seq)
        return self._replay.after(last_seq)
