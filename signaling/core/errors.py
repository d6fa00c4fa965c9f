"""The one exception root of the signaling service, and the errors that several layers share.

Every exception class of ``signaling`` derives from :class:`SwitchboardError`. Below it, as h11
splits ``RemoteProtocolError`` from ``LocalProtocolError``, the cause decides the branch:

* :class:`PeerError`: the other side broke a rule or refused — a client's frame, token or resume,
  an operator's flag or key, a remote server's answer (TURN, admin API, webhook receiver). Answer
  it (error code, close code, HTTP status, exit 2), never log a traceback.
* :class:`InternalError`: ours, or a dependency of ours failed (Redis did not answer). Logged, the
  operation fails, the node goes on.
* :class:`MediaError`: a refusal by the SFU, carrying its stable :attr:`~MediaError.code`; the
  code says whose fault it was (``bad-sdp``: the peer's; ``sfu-error``, ``sfu-unavailable``: ours).
* :class:`SessionMoved`: neither a fault nor a refusal — the cluster moved a session to another
  node and this node must let it go.

``sfu`` never imports ``signaling``, so the SFU's errors have their own root
(``sfu.errors.SfuException``); the signaling side meets them only through the media port
(:data:`signaling.backend.media.MEDIA_REFUSALS`). This module is pure: no I/O, no project imports.
"""

from __future__ import annotations

import enum


class SwitchboardError(Exception):
    """Root of every exception the signaling service defines."""


class PeerError(SwitchboardError):
    """The other side (client, operator input, remote server) broke a rule or refused."""


class InternalError(SwitchboardError):
    """Our own failure, or one of a dependency we rely on (Redis, the SFU's internals)."""


class BackendUnavailable(InternalError):
    """Redis did not answer within the deadline (or refused): the operation did not complete.

    A write that raised this may or may not have been applied; the backend resyncs the members
    it holds, so membership converges either way, and a ``send`` that raised was delivered at
    most once.
    """


class ResumeRefusal(enum.Enum):
    """Why a resume was refused; the value is the ``reason`` label of
    ``switchboard_resume_failures_total`` (docs/operations.md)."""

    #: No such session here (never existed, expired, or another room).
    UNKNOWN = "unknown"
    #: The session ended (left, kicked, replay overflow, grace period over).
    ENDED = "ended"
    #: The resume token does not match.
    BAD_TOKEN = "bad-token"
    #: ``last_seq`` is beyond the last seq the server sent.
    AHEAD = "ahead"
    #: ``last_seq`` is below the seq the client already acknowledged.
    BEHIND = "behind"
    #: The stored replay has a hole (cluster: a frame is missing from the ledger).
    REPLAY_INCOMPLETE = "replay-incomplete"
    #: The replay does not fit this node's replay bounds.
    REPLAY_OVERFLOW = "replay-overflow"
    #: The token presented with the resume is not valid (or not for this room).
    UNAUTHORIZED = "unauthorized"


class ResumeRefused(PeerError):
    """A resume that cannot be honoured; the client must rejoin (``resume-failed`` + 4011)."""

    def __init__(self, reason: ResumeRefusal, message: str | None = None) -> None:
        super().__init__(message or reason.value)
        self.reason = reason

    def __repr__(self) -> str:
        return f"ResumeRefused({self.reason}, {str(self)!r})"


class MediaError(SwitchboardError):
    """A media request failed; :attr:`code` is one of the SFU's stable error codes
    (``bad-sdp``, ``sfu-error``, ``unknown-track``, ``not-joined``, ``sfu-unavailable``,
    ``candidate-refused``, ``too-many-tracks``), the message is for humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {str(self)!r})"


class SessionMoved(SwitchboardError):
    """Another node owns the session now (it resumed there): this node must let it go."""
