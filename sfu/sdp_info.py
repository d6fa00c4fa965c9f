"""Small, pure readers and rewriters of SDP text.

The SFU needs a few facts from a client's offer *before* handing it to aiortc (which m-lines
send what, with which codecs, under which msid) in order to prepare one transceiver per m-line
with codec preferences: aiortc computes the negotiated codecs inside ``setRemoteDescription``,
so preferences set afterwards have no effect. It also rewrites host candidates for a 1:1 NAT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sfu.errors import SfuException
from sfu.h264 import codec_name, is_h264, profile_key

SENDING_DIRECTIONS = frozenset({"sendonly", "sendrecv"})
_DIRECTIONS = frozenset({"sendonly", "sendrecv", "recvonly", "inactive"})
#: RFC 4566 token characters (what ``a=msid`` identifiers are made of).
_TOKEN = re.compile(r"^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]{1,64}$")


class SdpError(SfuException, ValueError):
    """The SDP is not something the SFU can negotiate."""


@dataclass(frozen=True, slots=True)
class OfferedCodec:
    payload_type: int
    name: str
    clock_rate: int
    fmtp: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class MediaSection:
    index: int
    kind: str
    port: int
    mid: str | None = None
    direction: str = "sendrecv"
    msid_stream: str | None = None
    msid_track: str | None = None
    #: Payload types in m-line order (the offerer's preference order).
    formats: list[int] = field(default_factory=list)
    codecs: list[OfferedCodec] = field(default_factory=list)
    #: ``a=bundle-only``: port 0 then means "bundled", not "rejected" (RFC 8843 section 6).
    bundle_only: bool = False
    #: ``a=setup`` value (``actpass``, ``active``, ``passive``), if any.
    setup: str | None = None

    @property
    def rejected(self) -> bool:
        """Port 0 without ``a=bundle-only``: the m-line is rejected (RFC 3264 section 6)."""
        return self.port == 0 and not self.bundle_only

    @property
    def sending(self) -> bool:
        """The remote side sends media on this m-line (and did not reject it).

        webrtcbin's ``max-bundle`` offers put ``port 0`` and ``a=bundle-only`` on every m-line
        but the first: an active bundled section (RFC 8843 section 6), not a rejected one.
        """
        return not self.rejected and self.direction in SENDING_DIRECTIONS


@dataclass(slots=True)
class SessionInfo:
    sections: list[MediaSection]
    bundle: list[str]


def parse_session(sdp: str) -> SessionInfo:
    """Extract m-sections, mids, directions, msids, codecs and the BUNDLE group."""
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise SdpError("not an SDP (must start with v=0)")
    sections: list[MediaSection] = []
    bundle: list[str] = []
    current: MediaSection | None = None
    rtpmap: dict[int, tuple[str, int]] = {}
    fmtp: dict[int, dict[str, str]] = {}
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            _attach_codecs(current, rtpmap, fmtp)
            rtpmap, fmtp = {}, {}
            parts = line[2:].split()
            if len(parts) < 3:
                raise SdpError(f"malformed m-line: {line!r}")
            try:
                port = int(parts[1].split("/")[0])
            except ValueError as exc:
                raise SdpError(f"malformed m-line port: {line!r}") from exc
            current = MediaSection(
                index=len(sections),
                kind=parts[0],
                port=port,
                formats=[int(f) for f in parts[3:] if f.isdigit()],
            )
            sections.append(current)
        elif line.startswith("a=group:BUNDLE"):
            bundle = line[len("a=group:BUNDLE") :].split()
        elif current is None:
            continue
        elif line.startswith("a=mid:"):
            current.mid = line[6:].strip()
        elif line == "a=bundle-only":
            current.bundle_only = True
        elif line.startswith("a=setup:"):
            current.setup = line[8:].strip()
        elif line[2:] in _DIRECTIONS and line.startswith("a="):
            current.direction = line[2:]
        elif line.startswith("a=msid:"):
            ids = line[7:].split()
            if ids:
                current.msid_stream = ids[0]
                current.msid_track = ids[1] if len(ids) > 1 else None
        elif line.startswith("a=rtpmap:"):
            _parse_rtpmap(line, rtpmap)
        elif line.startswith("a=fmtp:"):
            _parse_fmtp(line, fmtp)
    _attach_codecs(current, rtpmap, fmtp)
    if not sections:
        raise SdpError("SDP has no m-line")
    return SessionInfo(sections=sections, bundle=bundle)


def _attach_codecs(
    section: MediaSection | None,
    rtpmap: dict[int, tuple[str, int]],
    fmtp: dict[int, dict[str, str]],
) -> None:
    if section is None:
        return
    for pt in section.formats:
        if pt in rtpmap:
            name, clock = rtpmap[pt]
            section.codecs.append(OfferedCodec(pt, name, clock, fmtp.get(pt, {})))


def _parse_rtpmap(line: str, out: dict[int, tuple[str, int]]) -> None:
    try:
        pt_text, encoding = line[len("a=rtpmap:") :].split(None, 1)
        bits = encoding.split("/")
        out[int(pt_text)] = (bits[0], int(bits[1]))
    except (ValueError, IndexError) as exc:
        raise SdpError(f"malformed rtpmap: {line!r}") from exc


def _parse_fmtp(line: str, out: dict[int, dict[str, str]]) -> None:
    try:
        pt_text, params = line[len("a=fmtp:") :].split(None, 1)
        pt = int(pt_text)
    except ValueError:
        return  # an fmtp we cannot read only matters for H.264, where it then fails to match
    values: dict[str, str] = {}
    for item in params.split(";"):
        if "=" in item:
            key, value = item.split("=", 1)
            values[key.strip().lower()] = value.strip()
    out[pt] = values


def is_constrained_baseline(profile_level_id: str) -> bool:
    """RFC 6184 / RFC 7742: is this H.264 profile-level-id constrained baseline?"""
    try:
        value = int(profile_level_id, 16)
    except ValueError:
        return False
    if len(profile_level_id) != 6:
        return False
    profile_idc, iop = value >> 16, (value >> 8) & 0xFF
    if profile_idc == 0x42:
        return bool(iop & 0x40)
    if profile_idc == 0x4D:
        return bool(iop & 0x80)
    if profile_idc == 0x58:
        return iop & 0xC0 == 0xC0
    return False


def codec_acceptable(codec: OfferedCodec, name: str) -> bool:
    """Is ``codec`` (as offered) the codec ``name`` in a form the SFU forwards?"""
    if codec.name.lower() != codec_name(name).lower():
        return False
    if is_h264(name):
        return codec.name.upper() == "H264" and codec.fmtp.get(
            "packetization-mode", "0"
        ) == "1" and profile_key(codec.fmtp.get("profile-level-id", "42e01f")) == name
    if name == "opus":
        return codec.clock_rate == 48000
    return codec.clock_rate == 90000


def choose_codec(section: MediaSection, video_preferences: tuple[str, ...]) -> str | None:
    """The codec name to force on a sending m-line: first preference the offer contains."""
    preferences = ("opus",) if section.kind == "audio" else video_preferences
    for name in preferences:
        if any(codec_acceptable(c, name) for c in section.codecs):
            return name
    return None


def is_msid_token(value: str | None) -> bool:
    return value is not None and bool(_TOKEN.match(value))


_HOST_CANDIDATE = re.compile(
    r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host)(.*)$", re.IGNORECASE
)


def announce_address(sdp: str, address: str) -> str:
    """Replace the address of every host candidate (and of ``c=`` lines) with ``address``.

    For a server behind a 1:1 NAT: the remote side reaches the public address, the NAT maps it
    to the local one the socket is bound to.
    """
    family = "IP6" if ":" in address else "IP4"
    out = []
    for line in sdp.split("\r\n"):
        match = _HOST_CANDIDATE.match(line)
        if match:
            line = f"{match.group(1)}{address}{match.group(3)}{match.group(4)}"
        elif line.startswith("c=IN ") and not line.endswith(" 0.0.0.0"):
            line = f"c=IN {family} {address}"
        out.append(line)
    return "\r\n".join(out)


@dataclass(frozen=True, slots=True)
class CandidateFields:
    """The parts of an ``a=candidate`` value (RFC 8839 section 5.1)."""

    foundation: str
    component: int
    protocol: str
    priority: int
    ip: str
    port: int
    type: str
    related_address: str | None = None
    related_port: int | None = None
    tcp_type: str | None = None


def parse_candidate(text: str) -> CandidateFields:
    """Parse a browser ``RTCIceCandidate.candidate`` string (with or without ``candidate:``)."""
    value = text.strip()
    for prefix in ("a=", "candidate:"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
    bits = value.split()
    if len(bits) < 8 or bits[6] != "typ":
        raise SdpError(f"malformed candidate: {text!r}")
    extra: dict[str, str] = {}
    for i in range(8, len(bits) - 1, 2):
        extra[bits[i]] = bits[i + 1]
    try:
        return CandidateFields(
            foundation=bits[0],
            component=int(bits[1]),
            protocol=bits[2].lower(),
            priority=int(bits[3]),
            ip=bits[4],
            port=int(bits[5]),
            type=bits[7],
            related_address=extra.get("raddr"),
            related_port=int(extra["rport"]) if "rport" in extra else None,
            tcp_type=extra.get("tcptype"),
        )
    except ValueError as exc:
        raise SdpError(f"malformed candidate: {text!r}") from exc


# -- rejected m-lines (RFC 3264 section 6) ----------------------------------------------------

#: Transport attributes a rejected section of an answer gets from an accepted one.
_TRANSPORT_PREFIXES = ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:", "a=setup:")


def _split(sdp: str) -> tuple[list[str], list[list[str]]]:
    """Session-level lines and the lines of each m-section (line endings dropped)."""
    head: list[str] = []
    sections: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        elif line:
            head.append(line)
    return head, sections


def _join(head: list[str], sections: list[list[str]]) -> str:
    lines = head + [line for section in sections for line in section if line]
    return "\r\n".join(lines) + "\r\n"


def _mid_of(section: list[str]) -> str | None:
    return next((line[6:].strip() for line in section if line.startswith("a=mid:")), None)


def _is_rejected(section: list[str]) -> bool:
    parts = section[0].split(" ")
    return len(parts) > 1 and parts[1].split("/")[0] == "0" and "a=bundle-only" not in section


def _with_port(m_line: str, port: int) -> str:
    parts = m_line.split(" ")
    parts[1] = str(port)
    return " ".join(parts)


def substitute_rejected(answer: str, offer: str) -> tuple[str, list[str]]:
    """An answer aiortc accepts although it rejects some m-lines; and the rejected mids.

    A rejected section (port 0, e.g. Firefox without OpenH264 refusing H.264) carries no ICE
    credentials nor codecs, and aiortc refuses the whole answer for it. Each one is replaced by
    our own offer's section for that mid, made ``a=inactive``, with the transport attributes of
    an accepted section and without candidates, and its mid goes last in the BUNDLE group (so an
    accepted mid stays the group's transport). When the answer rejects every m-line there is no
    transport to borrow: the SDP returned is ``""`` (nothing to apply, every mid rejected).
    """
    head, sections = _split(answer)
    _, offered = _split(offer)
    by_mid = {_mid_of(s): s for s in offered}
    accepted = [s for s in sections if not _is_rejected(s)]
    rejected_mids = [mid for s in sections if _is_rejected(s) and (mid := _mid_of(s)) is not None]
    if not rejected_mids:
        return answer, []
    if not accepted:
        return "", rejected_mids
    transport = [line for line in accepted[0] if line.startswith(_TRANSPORT_PREFIXES)]
    out: list[list[str]] = []
    for section in sections:
        mid = _mid_of(section)
        if mid not in rejected_mids:
            out.append(section)
            continue
        ours = by_mid.get(mid)
        if ours is None:
            raise SdpError(f"the answer rejects m-line {mid}, which the offer does not have")
        kept = [
            line for line in ours[1:]
            if not line.startswith((*_TRANSPORT_PREFIXES, "a=candidate:", "a=end-of-candidates"))
            and line[2:] not in _DIRECTIONS
        ]
        out.append([_with_port(ours[0], 9), *kept, *transport, "a=inactive"])
    accepted_mids = [_mid_of(s) for s in accepted]
    head = [
        "a=group:BUNDLE " + " ".join([m for m in accepted_mids if m] + rejected_mids)
        if line.startswith("a=group:BUNDLE") else line
        for line in head
    ]
    return _join(head, out), rejected_mids


def reject_in_offer(sdp: str, mids: set[str]) -> str:
    """Our offer with the m-lines of ``mids`` rejected (port 0, out of the BUNDLE group).

    A client that rejected an m-line stopped its transceiver; offering the mid again with a
    port would ask it to revive it, which JSEP forbids.
    """
    if not mids:
        return sdp
    head, sections = _split(sdp)
    out = [
        [_with_port(s[0], 0), *s[1:]] if _mid_of(s) in mids else s
        for s in sections
    ]
    head = [
        "a=group:BUNDLE " + " ".join(m for m in line[len("a=group:BUNDLE") :].split() if m not in mids)
        if line.startswith("a=group:BUNDLE") else line
        for line in head
    ]
    return _join(head, out)
