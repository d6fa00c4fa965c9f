"""The RPC between signaling nodes and SFU nodes: message shapes and stream names, no I/O.

A signaling node in a cluster runs no SFU: each media call of the hub (``join``, ``publish``, ...)
becomes a :class:`Request` appended to the request stream of the SFU node that holds the room
(``p sfu-rpc:<sfu node>``), and the SFU node answers with a :class:`Reply` appended to the reply
stream of the signaling node that asked (``p sfu-reply:<signaling node>``). Streams, not pub/sub,
for the reason the backend gives (an entry written while the reader reconnects is not lost) and
because one stream per SFU node keeps the requests of one signaling node in the order they were
appended, which is what lets the SFU node run the requests of one participant in order.

Everything here is pure: encoding, validation and the error codes, unit-tested without Redis.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast, get_args

from signaling.core.errors import MediaError, PeerError

Op = Literal[
    "join", "publish", "subscriber_answer", "add_candidate", "unpublish", "mute", "track_state", "leave",
    "set_subscription",
    # WHEP and recording (signaling/server/whip_http.py, the admin API).
    "play", "record_start", "record_stop", "recordings",
]
OPS: Final = frozenset(get_args(Op))

#: Refusal codes a reply may carry. All but one are the SFU's own (``sfu.errors``);
#: ``sfu-unavailable`` is the caller's verdict when no SFU answered (dead, unreachable, timeout,
#: no capacity). The hub maps each onto the protocol error of the same name.
BAD_SDP: Final = "bad-sdp"
#: Field an SFU node adds to every message it sends a client (its node id). The signaling node
#: holding the client strips it, and drops the message when the client's room has moved to
#: another SFU node since: a node that hands its rooms over still renegotiates for a moment, and
#: its offer must not reach a client that already started over with the new node.
VIA: Final = "_sfu"

SFU_ERROR: Final = "sfu-error"
UNKNOWN_TRACK: Final = "unknown-track"
NOT_JOINED: Final = "not-joined"
SFU_UNAVAILABLE: Final = "sfu-unavailable"
CANDIDATE_REFUSED: Final = "candidate-refused"
TOO_MANY_TRACKS: Final = "too-many-tracks"
CODES: Final = frozenset(
    {BAD_SDP, SFU_ERROR, UNKNOWN_TRACK, NOT_JOINED, SFU_UNAVAILABLE, CANDIDATE_REFUSED, TOO_MANY_TRACKS}
)

#: Requests the SFU node runs even when the caller stopped waiting for them: both are idempotent
#: bookkeeping, and skipping a late ``join`` would leave the participant out of the room for good.
RUN_WHEN_LATE: Final = frozenset({"join", "leave"})


class RpcFormatError(PeerError, ValueError):
    """A stream entry that is not a valid request or reply (dropped and logged by the reader)."""


class RemoteMediaError(MediaError):
    """A media call to an SFU node failed; :attr:`code` is one of :data:`CODES`."""


def request_stream(prefix: str, sfu_node: str) -> str:
    """The stream an SFU node reads its requests from."""
    return f"{prefix}sfu-rpc:{sfu_node}"


def reply_stream(prefix: str, signaling_node: str) -> str:
    """The stream a signaling node reads the replies to its requests from."""
    return f"{prefix}sfu-reply:{signaling_node}"


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise RpcFormatError(f"{key}: expected a string, got {value!r}")
    return value


def check_args(op: str, args: Any) -> dict[str, Any]:
    """The arguments of ``op``, validated; raises :class:`RpcFormatError`.

    A request crosses a process boundary: the SFU node must not call the SFU with a missing or
    mistyped argument, whatever wrote the entry.
    """
    if op not in OPS:
        raise RpcFormatError(f"unknown op {op!r}")
    if not isinstance(args, dict):
        raise RpcFormatError(f"args of {op}: expected an object, got {args!r}")
    match op:
        case "join":
            if not isinstance(args.get("subscribe"), bool):
                raise RpcFormatError("join: subscribe must be a boolean")
            codecs = args.get("codecs")
            if codecs is not None and not (isinstance(codecs, list) and all(isinstance(c, str) for c in codecs)):
                raise RpcFormatError("join: codecs must be a list of strings")
        case "publish" | "subscriber_answer":
            _str(args, "sdp")
            tracks = args.get("tracks")
            if tracks is not None and not (
                isinstance(tracks, list) and all(isinstance(t, dict) and isinstance(t.get("id"), str) for t in tracks)
            ):
                raise RpcFormatError("publish: tracks must be a list of {id, source, muted}")
        case "add_candidate":
            if args.get("target") not in ("publisher", "subscriber"):
                raise RpcFormatError(f"add_candidate: bad target {args.get('target')!r}")
            if "candidate" not in args or not (args["candidate"] is None or isinstance(args["candidate"], dict)):
                raise RpcFormatError("add_candidate: candidate must be an object or null")
        case "unpublish":
            _str(args, "track")
        case "mute" | "track_state":
            _str(args, "track")
            if not isinstance(args.get("muted"), bool):
                raise RpcFormatError(f"{op}: muted must be a boolean")
        case "set_subscription":
            _str(args, "track")
            if args.get("quality") not in ("low", "medium", "high", "off"):
                raise RpcFormatError(f"set_subscription: bad quality {args.get('quality')!r}")
        case "play":
            _str(args, "sdp")
            for key in ("peer", "track"):
                if args.get(key) is not None:
                    _str(args, key)
        case "record_start":
            _str(args, "directory")
            if args.get("track") is not None:
                _str(args, "track")
        case "leave" | "record_stop" | "recordings":
            pass
    return cast("dict[str, Any]", args)


@dataclass(frozen=True, slots=True)
class Request:
    """One media call of a signaling node, as the SFU node receives it."""

    #: Unique per caller incarnation (``<random>:<counter>``): a reply names it.
    id: str
    op: Op
    room: str
    #: The participant (peer id) the call is about; requests of one participant run in order.
    participant: str
    #: Operation arguments (see :func:`check_args`).
    args: dict[str, Any] = field(default_factory=dict)
    #: Signaling node whose reply stream gets the answer; None: fire and forget (``leave``).
    reply_to: str | None = None
    #: Wall-clock time (``time.time()``) after which the caller no longer waits for the answer.
    deadline: float = math.inf

    def encode(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "op": self.op,
                "room": self.room,
                "p": self.participant,
                "args": self.args,
                "reply": self.reply_to,
                # JSON has no infinity: "no deadline" is written as null.
                "deadline": None if math.isinf(self.deadline) else self.deadline,
            },
            separators=(",", ":"),
        )

    @staticmethod
    def decode(raw: str) -> Request:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise RpcFormatError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RpcFormatError("a request must be an object")
        op = _str(data, "op")
        args = check_args(op, data.get("args", {}))
        reply = data.get("reply")
        if reply is not None and not isinstance(reply, str):
            raise RpcFormatError(f"reply: expected a node id or null, got {reply!r}")
        deadline = data.get("deadline")
        if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, int | float)):
            raise RpcFormatError(f"deadline: expected a number or null, got {deadline!r}")
        return Request(
            id=_str(data, "id"),
            op=cast("Op", op),
            room=_str(data, "room"),
            participant=_str(data, "p"),
            args=args,
            reply_to=reply,
            deadline=math.inf if deadline is None else float(deadline),
        )

    def expired(self, now: float) -> bool:
        """The caller gave up on it (and it is not one of :data:`RUN_WHEN_LATE`)."""
        return now > self.deadline and self.op not in RUN_WHEN_LATE


@dataclass(frozen=True, slots=True)
class Reply:
    """The SFU node's answer to one :class:`Request`."""

    id: str
    ok: bool
    #: ``publish``: the SDP answer; every other op: None.
    result: Any = None
    #: On refusal, one of :data:`CODES`.
    code: str | None = None
    message: str = ""

    def encode(self) -> str:
        data: dict[str, Any] = {"id": self.id, "ok": self.ok}
        if self.ok:
            data["result"] = self.result
        else:
            data["code"] = self.code
            data["message"] = self.message
        return json.dumps(data, separators=(",", ":"))

    @staticmethod
    def decode(raw: str) -> Reply:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise RpcFormatError(f"not JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
            raise RpcFormatError("a reply must be an object with a boolean ok")
        if data["ok"]:
            return Reply(id=_str(data, "id"), ok=True, result=data.get("result"))
        code = data.get("code")
        # An unknown code (a newer SFU node) is still a refusal: keep it generic.
        return Reply(
            id=_str(data, "id"),
            ok=False,
            code=code if code in CODES else SFU_ERROR,
            message=str(data.get("message", "")),
        )

    @staticmethod
    def refusal(request_id: str, code: str, message: str) -> Reply:
        return Reply(id=request_id, ok=False, code=code if code in CODES else SFU_ERROR, message=message)

    def raise_for_refusal(self) -> Any:
        """The result of an accepted call; a refusal raises :class:`RemoteMediaError`."""
        if not self.ok:
            raise RemoteMediaError(self.code or SFU_ERROR, self.message or "refused by the SFU node")
        return self.result
