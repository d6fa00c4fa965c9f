"""Validate SDP and ICE candidates before aiortc parses them. No I/O.

aiortc's parsers were written for well-behaved peers: hostile input can raise anything or hang
in pathological cases. This is a cheap structural filter (RFC 8866 line grammar, RFC 8839
candidate grammar) that rejects what cannot be a real offer, answer or candidate, with a clear
message, so aiortc only ever sees plausible input.
"""

from __future__ import annotations

import re

_LINE = re.compile(r"^[a-z]=[^\x00-\x08\x0a-\x1f\x7f]*$")
_CANDIDATE = re.compile(
    r"^(?:a=)?candidate:[A-Za-z0-9+/]{1,32} \d{1,3} (?:udp|tcp|UDP|TCP) \d{1,10} "
    r"(?P<addr>[A-Za-z0-9.:_-]{1,255}) (?P<port>\d{1,5}) typ (?:host|srflx|prflx|relay)(?: [\x21-\x7e ]{0,512})?$"
)


class SdpError(ValueError):
    """The input cannot be a valid SDP or candidate; the message says why."""


def check_sdp(sdp: str, *, max_lines: int) -> None:
    lines = sdp.replace("\r\n", "\n").rstrip("\n").split("\n")
    if len(lines) > max_lines:
        raise SdpError(f"SDP has {len(lines)} lines, limit {max_lines}")
    if lines[0] != "v=0":
        raise SdpError("SDP must start with v=0")
    for number, line in enumerate(lines, 1):
        if not _LINE.match(line):
            raise SdpError(f"SDP line {number} is not <letter>=<value>: {line[:40]!r}")
    kinds = {line[0] for line in lines}
    missing = {"o", "s", "t", "m"} - kinds
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
