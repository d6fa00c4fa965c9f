"""WHIP (RFC 9725) and WHEP ingest/egress resources: the rules, without I/O.

A WHIP client POSTs its SDP offer to ``/whip/{room}`` and gets an answer plus a *session
resource* (``Location``); it trickles candidates to the resource with PATCH (an SDP fragment,
RFC 8840) and ends the session with DELETE. WHEP does the same for playing. Both are mapped
onto the room's participants: a WHIP publisher (or WHEP player) is a participant without a
WebSocket (see :meth:`signaling.server.hub.Hub.join_headless`).

This module holds what can be decided without a socket: the entity tag of a resource and the
PATCH preconditions (RFC 9110 section 13.1.1, RFC 6585 section 3), ICE restart detection,
the ``application/trickle-ice-sdpfrag`` parser, ``Link: rel="ice-server"`` rendering
(RFC 9725 section 4.6), and problem details (RFC 9457). The aiohttp handlers live in
:mod:`signaling.server.whip_http`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from signaling.core.errors import PeerError
from signaling.core.sdpcheck import SdpError, check_candidate

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
PROBLEM = "application/problem+json"
#: Problem type URIs: stable identifiers documented in docs/ingest-egress.md.
PROBLEM_BASE = "https://switchboard.dev/problems/"

Kind = Literal["whip", "whep"]


class Problem(PeerError):
    """An HTTP error answer with an RFC 9457 problem body."""

    def __init__(
        self, status: int, kind: str, detail: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "type": PROBLEM_BASE + self.kind,
            "title": self.kind.replace("-", " "),
            "status": self.status,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class IceCredentials:
    ufrag: str
    pwd: str


_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)\s*$", re.MULTILINE)
_PWD = re.compile(r"^a=ice-pwd:(\S+)\s*$", re.MULTILINE)


def ice_credentials(sdp: str) -> IceCredentials | None:
    """The first ``a=ice-ufrag``/``a=ice-pwd`` of an SDP or SDP fragment (BUNDLE: one pair)."""
    ufrag, pwd = _UFRAG.search(sdp), _PWD.search(sdp)
    if ufrag is None or pwd is None:
        return None
    return IceCredentials(ufrag.group(1), pwd.group(1))


@dataclass(slots=True)
class SdpFragment:
    """A parsed ``application/trickle-ice-sdpfrag`` body (RFC 8840 section 4.4)."""

    ice: IceCredentials | None
    #: ``(mid, "candidate:...")`` in order.
    candidates: list[tuple[str | None, str]] = field(default_factory=list)
    end_of_candidates: bool = False


def parse_sdpfrag(text: str, *, max_lines: int = 200) -> SdpFragment:
    """Parse a trickle fragment; raises :class:`Problem` 400 on anything malformed."""
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if len(lines) > max_lines:
        raise Problem(400, "bad-sdpfrag", f"the fragment has {len(lines)} lines, limit {max_lines}")
    fragment = SdpFragment(ice=ice_credentials(text))
    mid: str | None = None
    for line in lines:
        if line.startswith("a=mid:"):
            mid = line[6:]
        elif line.startswith("a=candidate:"):
            candidate = line[2:]
            try:
                check_candidate(candidate)
            except SdpError as exc:
                raise Problem(400, "bad-sdpfrag", str(exc)) from None
            fragment.candidates.append((mid, candidate))
        elif line == "a=end-of-candidates":
            fragment.end_of_candidates = True
        elif not re.match(r"^[a-z]=", line):
            raise Problem(400, "bad-sdpfrag", f"not an SDP line: {line[:40]!r}")
    return fragment


@dataclass(slots=True)
class Resource:
    """One WHIP or WHEP session resource."""

    kind: Kind
    room: str
    #: The participant it is in the room.
    peer: str
    #: The client's ICE credentials from its offer: a fragment with others is an ICE restart.
    ice: IceCredentials | None
    #: Unguessable: the resource URL is the capability to PATCH and DELETE it.
    id: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    @property
    def etag(self) -> str:
        """Strong entity tag of the ICE session (it would change with an ICE restart)."""
        ice = f"{self.ice.ufrag}:{self.ice.pwd}" if self.ice is not None else ""
        digest = hashlib.sha256(f"{self.id}|{ice}".encode()).hexdigest()[:20]
        return f'"{digest}"'

    @property
    def path(self) -> str:
        return f"/{self.kind}/{quote(self.room, safe='')}/{self.id}"

    def check_patch(self, content_type: str, if_match: str | None, body: str) -> list[dict[str, Any] | None]:
        """Apply the PATCH rules; return the candidates to add (``None``: end of candidates).

        Order: 415 (not a trickle fragment), 428 (no ``If-Match``; WHIP only, as RFC 9725
        section 4.3.1 requires it of clients), 422 (ICE restart:
        ``If-Match: *`` or new ICE credentials, which aioice cannot honour), 412 (stale tag),
        400 (malformed fragment).
        """
        if content_type != SDPFRAG:
            raise Problem(415, "unsupported-media-type", f"PATCH takes {SDPFRAG}, not {content_type or 'nothing'}",
                          headers={"Accept-Patch": SDPFRAG})
        if if_match is None and self.kind == "whip":
            raise Problem(428, "precondition-required", "PATCH needs If-Match with the resource's ETag")
        fragment = parse_sdpfrag(body)
        # WHEP: a trickle without If-Match is accepted (the WHEP draft's reference client,
        # Medooze's WHEPClient, sends none); a stale one is still refused.
        tags = [t.strip() for t in (if_match or self.etag).split(",")]
        restart = "*" in tags or (
            fragment.ice is not None and self.ice is not None and fragment.ice != self.ice
        )
        if restart:
            raise Problem(
                422, "ice-restart-unsupported",
                "ICE restart is not supported: the SFU's ICE stack (aioice) keeps its credentials "
                "for the connection's lifetime. DELETE this session and POST a new offer instead.",
            )
        if self.etag not in tags:
            raise Problem(412, "precondition-failed", f"If-Match {if_match} does not match ETag {self.etag}")
        out: list[dict[str, Any] | None] = [
            {"candidate": c, "sdpMid": mid if mid is not None else "0"} for mid, c in fragment.candidates
        ]
        if fragment.end_of_candidates:
            out.append(None)
        return out


class Resources:
    """The live resources of this node, bounded."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._by_id: dict[str, Resource] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, resource: Resource) -> None:
        if len(self._by_id) >= self.limit:
            raise Problem(503, "too-many-sessions", f"this node holds {self.limit} WHIP/WHEP sessions",
                          headers={"Retry-After": "5"})
        self._by_id[resource.id] = resource

    def get(self, kind: str, room: str, resource_id: str) -> Resource | None:
        resource = self._by_id.get(resource_id)
        if resource is None or resource.kind != kind or resource.room != room:
            return None
        return resource

    def remove(self, resource: Resource) -> None:
        self._by_id.pop(resource.id, None)

    def all(self) -> list[Resource]:
        return list(self._by_id.values())


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def link_headers(ice_servers: list[dict[str, Any]]) -> list[str]:
    """``Link`` header values for ``iceServers`` (RFC 9725 section 4.6): one per URL, TURN URLs
    with ``username``, ``credential`` and ``credential-type="password"``."""
    links: list[str] = []
    for server in ice_servers:
        urls = server.get("urls", [])
        for url in [urls] if isinstance(urls, str) else list(urls):
            if any(c in str(url) for c in "<>\r\n"):
                continue
            value = f'<{url}>; rel="ice-server"'
            if server.get("username") is not None and server.get("credential") is not None:
                value += (
                    f"; username={_quote(str(server['username']))}"
                    f"; credential={_quote(str(server['credential']))}"
                    '; credential-type="password"'
                )
            links.append(value)
    return links


def media_type(header: str | None) -> str:
    """The media type of a Content-Type header, lower case, parameters dropped."""
    return (header or "").split(";", 1)[0].strip().lower()


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
