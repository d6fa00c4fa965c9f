"""The one table of WebSocket close codes and error codes.

docs/protocol.md renders the same table; ``tests/unit/test_codes.py`` keeps the two in step.
A close code tells the client what to do next (:class:`ClientAction`); an error code names what
went wrong with one message, and says whether the connection goes on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ClientAction(enum.Enum):
    """What a client does after the server closes with a given code (DESIGN: reconnect contract)."""

    #: The conversation is over; do not reconnect.
    DONE = "done"
    #: Reconnect and resume at once (the server asked, e.g. while draining).
    RESUME_NOW = "resume-now"
    #: Reconnect with exponential backoff, then resume.
    RESUME_BACKOFF = "resume-backoff"
    #: Reconnect after the delay the server announced, then resume.
    RESUME_AFTER_DELAY = "resume-after-delay"
    #: The session is gone: start a new one (new peer id, new peer connections).
    REJOIN = "rejoin"
    #: Never retry automatically: a person or the application must decide.
    FATAL = "fatal"


@dataclass(frozen=True, slots=True)
class CloseCode:
    code: int
    name: str
    action: ClientAction
    meaning: str


class Close:
    """Close codes. 1000-1011 are RFC 6455 (section 7.4.1); 4000-4999 are ours."""

    NORMAL = CloseCode(1000, "normal", ClientAction.DONE, "The session ended (leave, or the server ended it cleanly).")
    GOING_AWAY = CloseCode(1001, "going-away", ClientAction.RESUME_NOW, "The node is draining or shutting down: reconnect now, maybe to another node, and resume.")
    MESSAGE_TOO_BIG = CloseCode(1009, "message-too-big", ClientAction.RESUME_BACKOFF, "A frame exceeded the hard size limit and could not be read.")
    INTERNAL = CloseCode(1011, "internal-error", ClientAction.RESUME_BACKOFF, "The server failed; reconnect with backoff and resume.")
    UNAUTHORIZED = CloseCode(4001, "unauthorized", ClientAction.FATAL, "No valid access token.")
    FORBIDDEN = CloseCode(4003, "forbidden", ClientAction.FATAL, "The token does not grant this room or action.")
    KICKED = CloseCode(4006, "kicked", ClientAction.FATAL, "An operator removed this participant.")
    RATE_LIMITED = CloseCode(4008, "rate-limited", ClientAction.RESUME_AFTER_DELAY, "Too many messages; reconnect after the announced delay.")
    TOO_SLOW = CloseCode(4009, "too-slow", ClientAction.RESUME_BACKOFF, "The client did not read fast enough and its send queue overflowed.")
    PROTOCOL_VIOLATION = CloseCode(4010, "protocol-violation", ClientAction.FATAL, "The client broke the protocol in a way the stream cannot survive.")
    SESSION_UNKNOWN = CloseCode(4011, "session-unknown", ClientAction.REJOIN, "The session cannot be resumed (unknown, expired, bad token, or its replay buffer overflowed).")
    REPLACED = CloseCode(4012, "replaced", ClientAction.FATAL, "A newer connection resumed this session.")
    HEARTBEAT_TIMEOUT = CloseCode(4013, "heartbeat-timeout", ClientAction.RESUME_BACKOFF, "Nothing arrived from the client within the heartbeat timeout.")

    @classmethod
    def all(cls) -> list[CloseCode]:
        return [v for v in vars(cls).values() if isinstance(v, CloseCode)]

    @classmethod
    def by_code(cls, code: int) -> CloseCode | None:
        for entry in cls.all():
            if entry.code == code:
                return entry
        return None


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    #: True when the client may send the same message again later and expect success.
    retryable: bool
    meaning: str


class Err:
    """Error codes carried by ``error {code, message, cseq?}``."""

    BAD_JSON = ErrorCode("bad-json", False, "The frame is not valid JSON, or not a JSON object.")
    BINARY_FRAME = ErrorCode("binary-frame", False, "Binary frames are not part of the protocol.")
    UNKNOWN_TYPE = ErrorCode("unknown-type", False, "`type` is missing or names no client message.")
    BAD_MESSAGE = ErrorCode("bad-message", False, "A field is missing, unexpected or of the wrong type.")
    TOO_LARGE = ErrorCode("too-large", False, "The frame or its `data` exceeds the size limit.")
    NOT_JOINED = ErrorCode("not-joined", True, "The message needs a joined session; send `join` first.")
    ALREADY_JOINED = ErrorCode("already-joined", False, "`join` was sent twice on one connection.")
    UNKNOWN_PEER = ErrorCode("unknown-peer", True, "No such peer in your room (it may have just left).")
    SELF_TARGET = ErrorCode("self-target", False, "A peer cannot signal itself.")
    JOIN_TIMEOUT = ErrorCode("join-timeout", False, "No `join` arrived within the join timeout.")
    RESUME_FAILED = ErrorCode("resume-failed", False, "The session is unknown, expired, or the resume token is wrong: rejoin.")
    REPLAY_OVERFLOW = ErrorCode("replay-overflow", False, "Too many unacknowledged messages: the session cannot be resumed; rejoin.")
    TOO_MANY_ERRORS = ErrorCode("too-many-errors", False, "The connection caused too many errors and is closed.")
    RATE_LIMITED = ErrorCode("rate-limited", True, "Too many messages; slow down.")
    UNAUTHORIZED = ErrorCode("unauthorized", False, "The access token is missing, invalid or expired.")
    FORBIDDEN = ErrorCode("forbidden", False, "The token does not grant this.")
    ROOM_FULL = ErrorCode("room-full", True, "The room holds its maximum number of participants.")
    BAD_SDP = ErrorCode("bad-sdp", False, "The SDP or ICE candidate is malformed (refused before the SFU) or unusable (refused by it).")
    LIMIT_EXCEEDED = ErrorCode("limit-exceeded", False, "A per-session limit (e.g. candidates) is reached.")
    NODE_FULL = ErrorCode("node-full", True, "This node holds its maximum number of rooms; try another node.")
    SFU_UNAVAILABLE = ErrorCode("sfu-unavailable", True, "No SFU can take this room right now.")
    SFU_ERROR = ErrorCode("sfu-error", False, "The SFU rejected the request (e.g. an SDP it cannot use).")
    UNKNOWN_TRACK = ErrorCode("unknown-track", False, "No such track of yours.")
    TOO_MANY_TRACKS = ErrorCode("too-many-tracks", False, "The publisher offer sends more tracks than allowed: per participant and kind (default 4 audio, 4 video) or in the room (default 250). Nothing of it was applied.")
    CANDIDATE_REFUSED = ErrorCode("candidate-refused", False, "The ICE candidate names an address the SFU does not contact (private, loopback, link-local, CGNAT, multicast, metadata or an mDNS name, unless the operator allows it); it is ignored, the connection goes on.")
    MEDIA_FAILED = ErrorCode("media-failed", True, "One of your peer connections with the SFU failed or was reset (`target` says which): publish again, or answer the fresh `subscriber-offer` on a new connection.")
    SHUTTING_DOWN = ErrorCode("shutting-down", True, "The node is draining and takes no new sessions.")
    INTERNAL = ErrorCode("internal", True, "The server failed while handling the message.")

    @classmethod
    def all(cls) -> list[ErrorCode]:
        return [v for v in vars(cls).values() if isinstance(v, ErrorCode)]
