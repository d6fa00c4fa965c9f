"""The Python SDK's session rules without I/O, in the shape of python-websockets' ``Protocol``.

The aiohttp shell (:mod:`signaling.client.shell`) feeds it what arrives and asks it what to do;
nothing here awaits, reads a clock or touches a socket, so every rule is tested without one
(``tests/unit/test_client_core.py``):

* **inbound stream** — ``seq`` duplicates are dropped, a gap means the link lost something
  (resume), and a message the application has no room for is *held*: not received, never
  acknowledged, so the server keeps it in its replay buffer and replays it on the next resume.
  The socket reader therefore never waits for the application (it keeps answering pings) and
  never evicts an event it already acknowledged.
* **acknowledgements** — at once after ``ack_every`` messages, else ``ack_delay`` seconds after
  the first unacknowledged one; only what the application was handed is ever acknowledged.
* **outbound window** — each state-changing message gets the next ``cseq`` and stays unconfirmed
  until the server confirms it (``ping``/``welcome`` ``last_cseq``); at most ``max_unconfirmed``
  are outstanding, and a resume resends them in order.
* **close code → action** — what a close (or a ``reconnect`` message) means for the next attempt.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from signaling.core.codes import ClientAction, Close
from signaling.core.errors import InternalError


class Inbound(enum.Enum):
    """What to do with one message from the server (:meth:`ClientSession.receive`)."""

    #: New (or not part of the stream): hand it to the application; it now counts as received.
    ACCEPT = "accept"
    #: Already received (a replay overlapping what we had): drop it.
    DUPLICATE = "duplicate"
    #: A ``seq`` was skipped: the link lost something; end this connection and resume.
    GAP = "gap"
    #: The application has no room for it: drop it unacknowledged; the server replays it on the
    #: resume that follows once the application caught up (:attr:`ClientSession.lagging`).
    HELD = "held"


class Welcome(enum.Enum):
    """What a ``welcome`` meant (:meth:`ClientSession.welcomed`)."""

    #: The first session of this client.
    JOINED = "joined"
    #: The session survived: resend what is unconfirmed (:meth:`ClientSession.unconfirmed`).
    RESUMED = "resumed"
    #: The old session was gone: a new one, seq and cseq start over.
    REJOINED = "rejoined"


@dataclass(slots=True)
class _Unconfirmed:
    cseq: int
    message: dict[str, Any] = field(repr=False)


class WindowFull(InternalError):
    """:meth:`ClientSession.stamp` with ``max_unconfirmed`` messages outstanding (the shell waits
    for room first, so this is a bug of the caller)."""


class ClientSession:
    """One client's view of its session: plain state, no I/O. Times are the caller's clock."""

    def __init__(self, *, ack_every: int = 16, ack_delay: float = 0.05, max_unconfirmed: int = 1024) -> None:
        if ack_every < 1 or max_unconfirmed < 1 or ack_delay < 0:
            raise ValueError("ack_every and max_unconfirmed must be >= 1, ack_delay >= 0")
        self.ack_every = ack_every
        self.ack_delay = ack_delay
        self.max_unconfirmed = max_unconfirmed
        self.session_id: str | None = None
        self.resume_token: str | None = None
        self.peer_id: str | None = None
        #: Highest server ``seq`` received (handed to the application): a resume continues after it.
        self.last_seq = 0
        #: Highest ``seq`` acknowledged to the server.
        self.acked = 0
        #: A message was held since the last (re)connection: the application lags; once it has
        #: room again the shell resumes to have the server replay what was held.
        self.lagging = False
        #: Messages held (counted for the application and tests; none is lost).
        self.held = 0
        self._ack_deadline: float | None = None
        self._cseq = 0
        self._unconfirmed: deque[_Unconfirmed] = deque()

    # -- inbound --------------------------------------------------------------------------------

    def receive(self, seq: int | None, *, room: bool, now: float) -> Inbound:
        """Judge one message; ``room``: the application can take one more event now.

        An unstamped message (``ping``, a request's ``error``) is always accepted: it is not
        part of the replayable stream. Call :meth:`ack_due` afterwards.
        """
        if seq is None:
            return Inbound.ACCEPT
        if seq <= self.last_seq:
            return Inbound.DUPLICATE
        if self.lagging or not room:
            # Held messages after the first are gaps anyway: hold everything until the resume.
            self.lagging = True
            self.held += 1
            return Inbound.HELD
        if seq != self.last_seq + 1:
            return Inbound.GAP
        self.last_seq = seq
        if self._ack_deadline is None:
            self._ack_deadline = now + self.ack_delay
        return Inbound.ACCEPT

    def ack_due(self, now: float) -> int | None:
        """The ``seq`` to acknowledge now (``ack {seq}``), or None; the caller sends it."""
        pending = self.last_seq - self.acked
        if pending <= 0:
            self._ack_deadline = None
            return None
        if pending >= self.ack_every or (self._ack_deadline is not None and now >= self._ack_deadline):
            self.acked = self.last_seq
            self._ack_deadline = None
            return self.acked
        return None

    @property
    def ack_deadline(self) -> float | None:
        """When :meth:`ack_due` will have something to send without another message arriving."""
        return self._ack_deadline if self.last_seq > self.acked else None

    def ping(self, message: dict[str, Any]) -> dict[str, Any]:
        """A server ``ping``: confirm what it confirms; return the ``pong`` to send at once."""
        last_cseq = message.get("last_cseq")
        if isinstance(last_cseq, int) and not isinstance(last_cseq, bool):
            self.confirm(last_cseq)
        return {"type": "pong", "t": message["t"]}

    # -- outbound -------------------------------------------------------------------------------

    @property
    def window_open(self) -> bool:
        return len(self._unconfirmed) < self.max_unconfirmed

    def stamp(self, message: dict[str, Any]) -> dict[str, Any]:
        """Give a state-changing message the next ``cseq``; it stays unconfirmed until the server
        confirms it. Raises :class:`WindowFull` if ``max_unconfirmed`` are outstanding."""
        if not self.window_open:
            raise WindowFull(f"{self.max_unconfirmed} messages unconfirmed")
        self._cseq += 1
        stamped = {**message, "cseq": self._cseq}
        self._unconfirmed.append(_Unconfirmed(self._cseq, stamped))
        return stamped

    def confirm(self, last_cseq: int) -> None:
        """The server processed every ``cseq`` up to ``last_cseq``."""
        while self._unconfirmed and self._unconfirmed[0].cseq <= last_cseq:
            self._unconfirmed.popleft()

    def unconfirmed(self, index: int) -> dict[str, Any] | None:
        """The ``index``-th unconfirmed message, oldest first (None past the end). By index, so a
        message stamped while the resends are written is resent too, in order."""
        return self._unconfirmed[index].message if index < len(self._unconfirmed) else None

    @property
    def unconfirmed_count(self) -> int:
        return len(self._unconfirmed)

    # -- connection lifecycle -------------------------------------------------------------------

    @property
    def resumable(self) -> bool:
        return self.session_id is not None and self.resume_token is not None

    def join_resume(self) -> dict[str, Any] | None:
        """The ``resume`` field of the next ``join`` (None: join afresh)."""
        if not self.resumable:
            return None
        return {"session": self.session_id, "token": self.resume_token, "last_seq": self.last_seq}

    def welcomed(self, welcome: dict[str, Any], *, resuming: bool) -> tuple[Welcome, int]:
        """A ``welcome``: returns what it meant and, for a rejoin, how many unconfirmed messages
        were dropped with the old session (0 otherwise)."""
        self.lagging = False
        self._ack_deadline = None
        if resuming and welcome.get("resumed"):
            last_cseq = welcome.get("last_cseq", 0)
            self.confirm(last_cseq if isinstance(last_cseq, int) else 0)
            return Welcome.RESUMED, 0
        dropped = len(self._unconfirmed)
        self._unconfirmed.clear()
        self._cseq = 0
        self.last_seq = welcome["seq"]
        self.acked = 0
        self.session_id = welcome["session"]
        self.resume_token = welcome["resume_token"]
        first = self.peer_id is None
        self.peer_id = welcome["peer"]
        return (Welcome.JOINED, 0) if first else (Welcome.REJOINED, dropped)

    def closed(self, code: int | None, *, reconnect_mode: str | None = None) -> ClientAction:
        """What to do after the connection closed with ``code`` (None: no close frame), or after
        a ``reconnect {mode}`` message. ``REJOIN`` forgets the session."""
        action = close_action(code)
        if reconnect_mode == "rejoin":
            action = ClientAction.REJOIN
        if action is ClientAction.REJOIN:
            self.session_id = None
            self.resume_token = None
        return action


def close_action(code: int | None) -> ClientAction:
    """The action a close code implies (:class:`~signaling.core.codes.Close`); unknown 4xxx codes are
    fatal (do not hammer a server we do not understand), anything else resumes with backoff."""
    if code is None:
        return ClientAction.RESUME_BACKOFF  # the link died without a close frame
    entry = Close.by_code(code)
    if entry is not None:
        return entry.action
    if 4000 <= code < 5000:
        return ClientAction.FATAL
    return ClientAction.RESUME_BACKOFF
