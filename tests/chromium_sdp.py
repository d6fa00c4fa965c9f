"""Answers to the SFU's subscriber offers written the way Chromium writes them.

Measured by having Debian's Chromium answer the SFU's subscriber offer for 99 publishers x
(camera + microphone), 198 m-sections: 106,007 bytes and 3,372 lines, i.e. 781 bytes / 6
lines of session part, then 531 bytes and 17 lines per m-section (audio 488 B / 15 lines,
video 572 B / 19 lines). :func:`chromium_answer` reproduces that layout line for line (same
attributes, same lengths of ufrag, password and fingerprint), so tests can build the largest
realistic answer of a room without a browser; ``tests/unit/test_media_limits.py`` checks the
sizes it produces against those figures.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


@dataclass
class _Section:
    kind: str
    formats: list[str]
    mid: str = ""
    direction: str = "sendrecv"
    extmaps: list[str] = field(default_factory=list)
    codec_lines: list[str] = field(default_factory=list)


def _sections(offer: str) -> list[_Section]:
    sections: list[_Section] = []
    for line in offer.splitlines():
        if line.startswith("m="):
            kind, _port, _proto, *formats = line[2:].split()
            sections.append(_Section(kind, formats))
        elif not sections:
            continue
        elif line.startswith("a=mid:"):
            sections[-1].mid = line[6:]
        elif line[2:] in ("sendonly", "recvonly", "sendrecv", "inactive"):
            sections[-1].direction = line[2:]
        elif line.startswith("a=extmap:"):
            sections[-1].extmaps.append(line)
        elif line.startswith(("a=rtpmap:", "a=rtcp-fb:", "a=fmtp:")):
            sections[-1].codec_lines.append(line)
    return sections


_ANSWER_DIRECTION = {"sendonly": "recvonly", "recvonly": "sendonly", "sendrecv": "sendrecv", "inactive": "inactive"}


def chromium_answer(offer: str) -> str:
    """A Chromium-shaped answer accepting every m-section of ``offer`` (no candidates: trickle)."""
    sections = _sections(offer)
    ufrag = secrets.token_urlsafe(3)[:4]
    pwd = secrets.token_urlsafe(18)[:24]
    fingerprint = ":".join(f"{b:02X}" for b in secrets.token_bytes(32))
    lines = [
        "v=0",
        f"o=- {secrets.randbelow(10**18) + 10**18} 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE " + " ".join(s.mid for s in sections),
        "a=msid-semantic: WMS",
    ]
    for s in sections:
        lines += [
            f"m={s.kind} 9 UDP/TLS/RTP/SAVPF {' '.join(s.formats)}",
            "c=IN IP4 0.0.0.0",
            "a=rtcp:9 IN IP4 0.0.0.0",
            f"a=ice-ufrag:{ufrag}",
            f"a=ice-pwd:{pwd}",
            "a=ice-options:trickle",
            f"a=fingerprint:sha-256 {fingerprint}",
            "a=setup:active",
            f"a=mid:{s.mid}",
            *reversed(s.extmaps),
            f"a={_ANSWER_DIRECTION[s.direction]}",
            "a=rtcp-mux",
        ]
        codec_lines = list(s.codec_lines)
        if s.kind == "audio" and not any(line.startswith("a=fmtp:") for line in codec_lines):
            codec_lines.append(f"a=fmtp:{s.formats[0]} minptime=10;useinbandfec=1")
        lines += codec_lines
    return "\r\n".join(lines) + "\r\n"
