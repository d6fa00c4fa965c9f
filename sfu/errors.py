"""The SFU's one exception type and its stable error codes.

The codes are the ones the signaling service maps onto its protocol error table
(``signaling/core/codes.py``: ``sfu-error``, ``unknown-track``, ``not-joined``, ``candidate-refused``,
``too-many-tracks``); ``bad-sdp`` is an ``sfu-error`` whose cause was the client's SDP or
candidate.
"""

from __future__ import annotations

from typing import Final, Literal

ErrorCode = Literal[
    "bad-sdp", "unknown-track", "not-joined", "sfu-error", "candidate-refused", "too-many-tracks",
    "media-failed",
]

#: The SDP (or ICE candidate) a client sent cannot be used: unparsable, no codec we forward, no
#: BUNDLE, or aiortc rejected it.
BAD_SDP: Final = "bad-sdp"
#: ``unpublish`` named a track this participant does not publish.
UNKNOWN_TRACK: Final = "unknown-track"
#: The participant has not joined this room (or has left it meanwhile).
NOT_JOINED: Final = "not-joined"
#: A remote ICE candidate names an address the SFU may not contact (private, loopback, mDNS…;
#: see :mod:`sfu.candidate_policy`). Nothing was sent to it.
CANDIDATE_REFUSED: Final = "candidate-refused"
#: A publisher offer sends more tracks than one participant (per kind) or the room may have.
TOO_MANY_TRACKS: Final = "too-many-tracks"
#: One of the participant's peer connections with the SFU failed (ICE or DTLS), or the SFU
#: reset its subscriber connection after answers it could not apply. Sent by the SFU on its own
#: (``error {code, message, target}``), never as the refusal of a request.
MEDIA_FAILED: Final = "media-failed"
#: Anything else the SFU refused: wrong negotiation state, closed SFU, internal failure.
SFU_ERROR: Final = "sfu-error"


class SfuException(Exception):
    """Root of every exception the SFU defines. ``sfu`` never imports ``signaling``, so this is
    not a ``signaling.core.errors.SwitchboardError``; signaling meets SFU errors only through its
    media port (``signaling.backend.media.MEDIA_REFUSALS``)."""


class SfuError(SfuException):
    """A request to the SFU failed; :attr:`code` is stable, the message is for humans."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code

    def __repr__(self) -> str:
        return f"SfuError({self.code!r}, {str(self)!r})"
