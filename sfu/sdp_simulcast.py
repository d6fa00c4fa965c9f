"""Simulcast in SDP: reading a publisher's ``a=rid``/``a=simulcast`` and answering them (pure).

aiortc 1.16's SDP parser drops ``a=rid`` and ``a=simulcast`` and cannot write them, and it does
not negotiate the RID header extensions. With aiortc's plain answer libwebrtc sends only its
first encoding; an answer that echoes the rid extensions and says ``a=rid:<r> recv`` plus
``a=simulcast:recv <r1>;<r2>;<r3>`` brings every layer (RFC 8853 section 5.3, RFC 8851
section 4). This module reads the offer and writes those lines into aiortc's answer.

Layers are the offered simulcast streams in ``a=simulcast`` order; alternatives (``a,b``) are
reduced to their first choice and a paused stream (``~r``) is still received (the publisher may
resume it). At most :data:`MAX_LAYERS` layers are taken; more are left out of the answer, which
RFC 8853 section 5.3 allows (the publisher then does not send them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
#: Layers received per video track.
MAX_LAYERS = 3
#: RFC 8851 rid-id characters (alpha-numeric, ``-``, ``_``); libwebrtc caps the length at 16.
_RID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")


@dataclass(frozen=True, slots=True)
class SimulcastOffer:
    """One offered m-section that sends simulcast."""

    mid: str
    #: The layers' rids in ``a=simulcast:send`` order (at most :data:`MAX_LAYERS`).
    rids: tuple[str, ...]
    #: ``a=extmap`` id of the rtp-stream-id extension in the offer.
    rid_extension: int
    #: ``a=extmap`` id of the repaired-rtp-stream-id extension (RTX of a layer), if offered.
    repaired_rid_extension: int | None


def parse_simulcast(sdp: str) -> dict[str, SimulcastOffer]:
    """The m-sections of an offer that send simulcast, by mid.

    A section counts only if it has a mid, an ``a=simulcast:send`` naming at least two rids that
    are declared ``a=rid:<r> send``, and the rtp-stream-id extension (without it the layers'
    packets cannot be told apart before their SSRCs are learnt). Anything else is left to the
    ordinary single-stream negotiation, and a malformed line only disqualifies its section.
    """
    out: dict[str, SimulcastOffer] = {}
    for section in _sections(sdp):
        offer = _parse_section(section)
        if offer is not None:
            out[offer.mid] = offer
    return out


def _parse_section(lines: list[str]) -> SimulcastOffer | None:
    mid: str | None = None
    declared: list[str] = []
    streams: list[str] = []
    extensions: dict[str, int] = {}
    for line in lines:
        if line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line.startswith("a=rid:"):
            parts = line[6:].split()
            if len(parts) >= 2 and parts[1] == "send" and _RID.match(parts[0]):
                declared.append(parts[0])
        elif line.startswith("a=simulcast:"):
            streams = _simulcast_send(line[len("a=simulcast:") :])
        elif line.startswith("a=extmap:"):
            parts = line[9:].split()
            if len(parts) >= 2:
                ident = parts[0].split("/", 1)[0]
                if ident.isdigit():
                    extensions[parts[1]] = int(ident)
    rids = [r for r in dict.fromkeys(streams) if r in declared][:MAX_LAYERS]
    if mid is None or len(rids) < 2 or RID_URI not in extensions:
        return None
    return SimulcastOffer(
        mid=mid,
        rids=tuple(rids),
        rid_extension=extensions[RID_URI],
        repaired_rid_extension=extensions.get(REPAIRED_RID_URI),
    )


def _simulcast_send(value: str) -> list[str]:
    """The first-choice rid of each stream of the ``send`` direction (RFC 8853 section 5.1)."""
    tokens = value.split()
    rids: list[str] = []
    for direction, streams in zip(tokens[::2], tokens[1::2], strict=False):
        if direction != "send":
            continue
        for stream in streams.split(";"):
            first = stream.split(",", 1)[0].lstrip("~")
            if _RID.match(first):
                rids.append(first)
    return rids


def answer_simulcast(answer: str, offers: dict[str, SimulcastOffer]) -> str:
    """aiortc's answer with ``a=rid:<r> recv`` and ``a=simulcast:recv`` for each offer section.

    Sections of other mids, and sections the answer rejects (port 0), are left unchanged; lines
    already present are not repeated.
    """
    if not offers:
        return answer
    head, sections = _split(answer)
    out: list[list[str]] = []
    for section in sections:
        mid = next((x[6:].strip() for x in section if x.startswith("a=mid:")), None)
        offer = offers.get(mid or "")
        parts = section[0].split(" ")
        if offer is None or (len(parts) > 1 and parts[1] == "0"):
            out.append(section)
            continue
        kept = [x for x in section if not x.startswith(("a=rid:", "a=simulcast:"))]
        added = [f"a=rid:{rid} recv" for rid in offer.rids]
        added.append("a=simulcast:recv " + ";".join(offer.rids))
        out.append(kept + added)
    return "\r\n".join(head + [x for s in out for x in s]) + "\r\n"


def _sections(sdp: str) -> list[list[str]]:
    return _split(sdp)[1]


def _split(sdp: str) -> tuple[list[str], list[list[str]]]:
    head: list[str] = []
    sections: list[list[str]] = []
    for raw in sdp.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            head.append(line)
    return head, sections
