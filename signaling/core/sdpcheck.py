"""Validate SDP and ICE candidates before aiortc parses them. No I/O.

aiortc's parsers were written for well-behaved peers: hostile input can raise anything or hang
in pathological cases. This is a cheap structural filter (RFC 8866 line grammar, RFC 8839
candidate grammar) that rejects what cannot be a real offer, answer or candidate, with a clear
message, so aiortc only ever sees plausible input.
"""

from __future__ import annotations

import re

from signaling.core.errors import PeerError

#: What makes a line (of the text with CR LF made LF) not ``<letter>=<value>``: a control
#: character other than tab and LF, or a line (after the first, which starts ``v=0``) that does
#: not start with a lowercase letter and ``=``. Two plain searches: a single alternation would
#: be tried at every character and cost more than the per-line loop it replaces.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BAD_START = re.compile(r"\n(?![a-z]=)")
_CANDIDATE = re.compile(
    r"^(?:a=)?candidate:[A-Za-z0-9+/]{1,32} \d{1,3} (?:udp|tcp|UDP|TCP) \d{1,10} "
    r"(?P<addr>[A-Za-z0-9.:_-]{1,255}) (?P<port>\d{1,5}) typ (?:host|srflx|prflx|relay)(?: [\x21-\x7e ]{0,512})?$"
)


class SdpError(PeerError, ValueError):
    """The input cannot be a valid SDP or candidate; the message says why."""


def check_sdp(sdp: str, *, max_lines: int) -> None:
    """Every line ``<letter>=<value>`` without control characters (tab allowed), at most
    ``max_lines`` lines, ``v=0`` first, and ``o=``, ``s=``, ``t=``, ``m=`` lines present.

    The whole text is searched at once (two regular expressions) rather than line by line: a
    full room's subscriber answer has thousands of lines, and the per-line loop took 2.3x as
    long (3.2 ms against 1.4 ms for 198 m-sections).
    """
    text = sdp.replace("\r\n", "\n").rstrip("\n")
    count = text.count("\n") + 1
    if count > max_lines:
        raise SdpError(f"SDP has {count} lines, limit {max_lines}")
    if not (text.startswith("v=0\n") or text == "v=0"):
        raise SdpError("SDP must start with v=0")
    control, bad_start = _CONTROL.search(text), _BAD_START.search(text)
    positions = [m.start() if m is control else m.start() + 1 for m in (control, bad_start) if m is not None]
    if positions:
        first = min(positions)
        start = text.rfind("\n", 0, first) + 1
        end = text.find("\n", start)
        line = text[start : end if end >= 0 else len(text)]
        number = text.count("\n", 0, start) + 1
        raise SdpError(f"SDP line {number} is not <letter>=<value>: {line[:40]!r}")
    missing = {kind for kind in "ostm" if f"\n{kind}=" not in text}
    if missing:
        raise SdpError(f"SDP lacks {', '.join(sorted(missing))}= lines")


def check_candidate(candidate: str) -> None:
    """A trickled candidate line; the empty string (end of candidates) is valid."""
    if candidate == "":
        return
    match = _CANDIDATE.match(candidate)
    if match is None:
        raise SdpError(f"not an ICE candidate: {candidate[:60]!r}")
    if int(match["port"]) > 65535:
        raise SdpError("candidate port out of range")
