"""Protocol v1: parse and validate client frames, build server messages. No I/O.

Validation runs the shipped JSON Schema (``signaling/core/schema/protocol-v1.json``), the same document
served at ``/protocol/v1/schema.json``, so what mobile developers read is what the server enforces.
Limits that a schema cannot express well (bytes of a frame, bytes of ``signal.data``) are checked
here too. Every failure is a :class:`ProtocolError` that names an :class:`~signaling.core.codes.ErrorCode`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import fastjsonschema

from signaling.core.codes import Err, ErrorCode
from signaling.core.errors import PeerError

PROTOCOL_VERSION = 1
JSON = dict[str, Any]


class ProtocolError(PeerError):
    """A client frame that cannot be accepted; the connection goes on unless told otherwise."""

    def __init__(
        self, error: ErrorCode, message: str, *, cseq: int | None = None, retry_after_ms: int | None = None
    ) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.cseq = cseq
        self.retry_after_ms = retry_after_ms


# -- client -> server -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resume:
    session: str
    token: str
    last_seq: int
    #: The client lost its peer connections (a page reload): the SFU drops the old ones.
    fresh_media: bool = False


@dataclass(frozen=True, slots=True)
class Join:
    room: str
    name: str = ""
    token: str | None = None
    subscribe: bool = True
    resume: Resume | None = None
    #: Codec names the client can receive (``RTCRtpReceiver.getCapabilities``); ``None``: any.
    codecs: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Signal:
    to: str
    data: Any
    cseq: int


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int


@dataclass(frozen=True, slots=True)
class Pong:
    t: float


@dataclass(frozen=True, slots=True)
class Leave:
    cseq: int | None = None
    #: Milliseconds the session may still be resumed (a page reload); 0: it ends now.
    linger_ms: int = 0


#: What a published track carries besides its kind (``publish.tracks[].source``).
SOURCES = ("camera", "microphone", "screen", "screen-audio")


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """The publisher's description of one track of its offer, by msid track id."""

    id: str
    source: str
    muted: bool = False


@dataclass(frozen=True, slots=True)
class Publish:
    cseq: int
    sdp: str
    tracks: tuple[TrackInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class TrackState:
    """The publisher muted (unmuted) one of its tracks itself; the others are told."""

    cseq: int
    track: str
    muted: bool


@dataclass(frozen=True, slots=True)
class SetSubscription:
    """The quality the client wants of another participant's (simulcast) video track."""

    cseq: int
    track: str
    quality: Literal["low", "medium", "high", "off"]


@dataclass(frozen=True, slots=True)
class Data:
    """An application message to some (``to``) or all other peers of the room."""

    cseq: int
    topic: str
    payload: Any
    to: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class SubscriberAnswer:
    cseq: int
    sdp: str


@dataclass(frozen=True, slots=True)
class Candidate:
    cseq: int
    target: Literal["publisher", "subscriber"]
    candidate: JSON | None


@dataclass(frozen=True, slots=True)
class Unpublish:
    cseq: int
    track: str


ClientMessage = (
    Join | Signal | Ack | Pong | Leave | Publish | SubscriberAnswer | Candidate | Unpublish | TrackState | Data
    | SetSubscription
)
#: Client messages that carry ``cseq`` and are de-duplicated after a resume.
Sequenced = Signal | Publish | SubscriberAnswer | Candidate | Unpublish | TrackState | Data | SetSubscription


@cache
def schema() -> JSON:
    """The protocol's JSON Schema document, as shipped in the package."""
    text = resources.files("signaling.core.schema").joinpath("protocol-v1.json").read_text("utf-8")
    document: JSON = json.loads(text)
    return document


@cache
def _validators() -> dict[str, Callable[[Any], Any]]:
    """One compiled validator per client message type.

    fastjsonschema turns the shipped schema into Python code: ~2 µs per message instead of
    ~30 µs interpreting it (bench/relay.py). Each client subschema is self-contained and uses
    only keywords draft-07 has, so it compiles as is.
    """
    draft07 = "http://json-schema.org/draft-07/schema#"
    return {
        name: fastjsonschema.compile({**sub, "$schema": draft07})
        for name, sub in schema()["$defs"]["client"].items()
    }


def client_types() -> frozenset[str]:
    return frozenset(_validators())


def _cseq_of(obj: JSON) -> int | None:
    value = obj.get("cseq")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


#: Deepest nesting of arrays and objects a frame may have (the envelope counts as one level).
MAX_DEPTH = 32
#: Longest integer literal accepted (digits): JavaScript prints integers below 1e21 in full and
#: larger ones with an exponent, so no client needs more; longer literals cost quadratic time.
MAX_INT_DIGITS = 21


class StrictJSONError(PeerError, ValueError):
    """A text that ``json`` would accept but RFC 8259 (or valid UTF-8) does not."""


def _reject_constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not a JSON number")


def _parse_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise StrictJSONError(f"integer literal of more than {MAX_INT_DIGITS} digits")
    return int(literal)


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e400 overflows to inf: not representable on the way out
        raise StrictJSONError(f"number {literal[:32]} is out of range")
    return value


#: A ``\u`` escape of a surrogate: the only way a lone surrogate gets into a parsed string of a
#: frame that is valid UTF-8 (a valid pair is combined into one code point by the parser).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_tree(value: Any, depth: int, max_depth: int, strings: bool) -> None:
    """Depth and (with ``strings``) lone surrogates, in one walk; only run when a cheap scan of
    the text says it could fail."""
    if depth > max_depth:
        raise StrictJSONError(f"nesting deeper than {max_depth}")
    if isinstance(value, str):
        if strings and not value.isascii():
            _utf8(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if strings and not key.isascii():
                _utf8(key)
            _check_tree(item, depth + 1, max_depth, strings)
    elif isinstance(value, list):
        for item in value:
            _check_tree(item, depth + 1, max_depth, strings)


def _utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise StrictJSONError("a string holds a lone surrogate (not encodable as UTF-8)") from None


def loads_strict(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse RFC 8259 JSON whose strings are valid Unicode, or raise :class:`StrictJSONError`.

    Python's ``json`` accepts ``NaN``/``Infinity``/``-Infinity``, overflows ``1e400`` to ``inf``,
    turns ``"\\ud800"`` into a lone surrogate and recurses without a bound; none of that may get
    in, because none of it can go out again (browsers refuse the frame; UTF-8 cannot encode it).
    """
    if not text.isascii():
        _utf8(text)  # a frame from the socket is valid UTF-8 already; a str from elsewhere may not be
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float)
    except RecursionError:
        raise StrictJSONError("nesting too deep") from None
    deep = text.count("[") + text.count("{") > max_depth
    escaped = "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None
    if deep or escaped:
        _check_tree(value, 1, max_depth, escaped)
    return value


def parse(
    frame: str, *, max_bytes: int, max_signal_bytes: int, max_data_bytes: int | None = None
) -> ClientMessage:
    """Turn one text frame into a typed message, or raise :class:`ProtocolError`."""
    # len() counts code points; a frame of up to max_bytes/4 code points cannot exceed max_bytes
    # in UTF-8, so most frames skip the encode.
    if len(frame) * 4 > max_bytes and len(frame.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ProtocolError(Err.TOO_LARGE, f"frame exceeds {max_bytes} bytes")
    try:
        obj = loads_strict(frame)
    except ValueError as exc:  # StrictJSONError and json.JSONDecodeError alike
        raise ProtocolError(Err.BAD_JSON, f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(Err.BAD_JSON, "a message must be a JSON object")
    kind = obj.get("type")
    validator = _validators().get(kind) if isinstance(kind, str) else None
    if validator is None or not isinstance(kind, str):
        raise ProtocolError(Err.UNKNOWN_TYPE, f"unknown message type {kind!r}", cseq=_cseq_of(obj))
    try:
        validator(obj)
    except fastjsonschema.JsonSchemaValueException as error:
        raise ProtocolError(Err.BAD_MESSAGE, f"{kind}: {error.message}", cseq=_cseq_of(obj)) from None
    if kind == "data":
        limit = max_signal_bytes if max_data_bytes is None else max_data_bytes
        # The payload is part of the frame: a frame within the limit needs no measuring.
        return _data(obj, limit if len(frame) * 4 > limit else None)
    # ``data`` is part of the frame, so a frame within the data limit needs no measuring.
    return _build(kind, obj, max_signal_bytes if len(frame) * 4 > max_signal_bytes else None)


#: Characters refused in names (and rooms, whose schema pattern is narrower still): C0 and C1
#: controls (NUL, newline, escape...) and the bidirectional marks, embeddings, overrides and
#: isolates that make a name display as something else (Trojan Source, CVE-2021-42574).
_UNSAFE = re.compile("[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def unsafe_text(text: str) -> bool:
    """True when ``text`` holds a control or bidirectional-formatting character."""
    return _UNSAFE.search(text) is not None


def _data(obj: JSON, max_payload_bytes: int | None) -> Data:
    if max_payload_bytes is not None:
        size = len(encode(obj["payload"]).encode("utf-8"))
        if size > max_payload_bytes:
            raise ProtocolError(
                Err.TOO_LARGE, f"data payload is {size} bytes, limit {max_payload_bytes}", cseq=obj["cseq"]
            )
    to = obj.get("to")
    return Data(cseq=obj["cseq"], topic=obj["topic"], payload=obj["payload"], to=tuple(to) if to is not None else None)


def _build(kind: str, obj: JSON, max_signal_bytes: int | None) -> ClientMessage:
    match kind:
        case "join":
            resume = obj.get("resume")
            if unsafe_text(obj.get("name", "")):
                raise ProtocolError(Err.BAD_MESSAGE, "join: name holds a control or bidirectional-override character")
            return Join(
                room=obj["room"],
                name=obj.get("name", ""),
                token=obj.get("token"),
                subscribe=obj.get("subscribe", True),
                codecs=tuple(obj["codecs"]) if "codecs" in obj else None,
                resume=Resume(resume["session"], resume["token"], resume["last_seq"], resume.get("fresh_media", False))
                if resume else None,
            )
        case "signal":
            size = len(encode(obj["data"]).encode("utf-8")) if max_signal_bytes is not None else 0
            if max_signal_bytes is not None and size > max_signal_bytes:
                raise ProtocolError(
                    Err.TOO_LARGE, f"signal data is {size} bytes, limit {max_signal_bytes}", cseq=obj["cseq"]
                )
            return Signal(to=obj["to"], data=obj["data"], cseq=obj["cseq"])
        case "ack":
            return Ack(seq=obj["seq"])
        case "pong":
            return Pong(t=float(obj["t"]))
        case "leave":
            return Leave(cseq=obj.get("cseq"), linger_ms=obj.get("linger_ms", 0))
        case "publish":
            tracks = tuple(TrackInfo(t["id"], t["source"], t.get("muted", False)) for t in obj.get("tracks", ()))
            return Publish(cseq=obj["cseq"], sdp=obj["sdp"], tracks=tracks)
        case "track-state":
            return TrackState(cseq=obj["cseq"], track=obj["track"], muted=obj["muted"])
        case "set-subscription":
            return SetSubscription(cseq=obj["cseq"], track=obj["track"], quality=obj["quality"])
        case "subscriber-answer":
            return SubscriberAnswer(cseq=obj["cseq"], sdp=obj["sdp"])
        case "candidate":
            return Candidate(cseq=obj["cseq"], target=obj["target"], candidate=obj["candidate"])
        case "unpublish":
            return Unpublish(cseq=obj["cseq"], track=obj["track"])
    raise AssertionError(f"schema accepted a type with no builder: {kind}")  # pragma: no cover


# -- server -> client -------------------------------------------------------------------------


def encode(message: Any) -> str:
    """Compact RFC 8259 JSON in valid UTF-8, the one encoding used on the wire.

    Raises :class:`StrictJSONError` (a ``ValueError``) for NaN/Infinity or a lone surrogate: the
    caller drops that one message; it never reaches a socket, a replay buffer or Redis.
    """
    try:
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise StrictJSONError(str(exc)) from None
    if not text.isascii():
        _utf8(text)
    return text


def error(code: ErrorCode, message: str, *, cseq: int | None = None, retry_after_ms: int | None = None) -> JSON:
    out: JSON = {"type": "error", "code": code.code, "message": message}
    if cseq is not None:
        out["cseq"] = cseq
    if retry_after_ms is not None:
        out["retry_after_ms"] = retry_after_ms
    return out


def peer_info(peer_id: str, name: str) -> JSON:
    return {"id": peer_id, "name": name}


def ping(t: float, last_cseq: int, rtt_ms: float | None = None, timeout_ms: int | None = None) -> JSON:
    out: JSON = {"type": "ping", "t": t, "last_cseq": last_cseq}
    if rtt_ms is not None:
        out["rtt_ms"] = rtt_ms
    if timeout_ms is not None:
        out["timeout_ms"] = timeout_ms
    return out


def reconnect(mode: Literal["resume", "rejoin"], delay_ms: int, scope: str = "session") -> JSON:
    return {"type": "reconnect", "mode": mode, "delay_ms": delay_ms, "scope": scope}
