"""STUN and TURN URIs (RFC 7064 ``stun:``/``stuns:``, RFC 7065 ``turn:``/``turns:``).

Operators type these by hand into configuration, and a browser silently ignores an ICE server
whose URL it cannot parse — the call then fails much later, behind a NAT, with no error anywhere.
Parsing them here, strictly, turns that into a startup error that names the bad URL.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

Scheme = Literal["stun", "stuns", "turn", "turns"]
Transport = Literal["udp", "tcp"]

#: Default ports (RFC 8489 §9: 3478 for plain STUN/TURN, 5349 over TLS).
DEFAULT_PORT = 3478
DEFAULT_TLS_PORT = 5349

_SCHEMES: dict[str, Scheme] = {"stun": "stun", "stuns": "stuns", "turn": "turn", "turns": "turns"}
# RFC 1123 host names: letters, digits and hyphens in dot-separated labels.
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")


@dataclass(frozen=True, slots=True)
class IceUri:
    """One parsed STUN/TURN URI."""

    #: ``stun``/``stuns``/``turn``/``turns``.
    scheme: Scheme
    #: Host name or IP address, without the brackets of an IPv6 literal.
    host: str
    #: Port, the scheme's default when the URI names none.
    port: int
    #: Transport to the server: ``stuns``/``turns`` always run over TCP (TLS).
    transport: Transport
    #: The URI was written with an explicit ``?transport=``; kept so ``str()`` round-trips.
    explicit_transport: bool = False
    #: The URI was written with an explicit port; kept so ``str()`` round-trips.
    explicit_port: bool = False

    @property
    def is_turn(self) -> bool:
        """A relay (``turn:``/``turns:``): it needs credentials."""
        return self.scheme in ("turn", "turns")

    @property
    def secure(self) -> bool:
        """The connection to the server is wrapped in TLS."""
        return self.scheme in ("stuns", "turns")

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` for a socket."""
        return (self.host, self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{self.scheme}:{host}"
        if self.explicit_port:
            text += f":{self.port}"
        if self.explicit_transport:
            text += f"?transport={self.transport}"
        return text


def parse_ice_uri(text: str) -> IceUri:
    """Parse ``text`` as a STUN or TURN URI, or raise :class:`ValueError` saying why.

    Grammar (RFC 7064 §3.1, RFC 7065 §3.1)::

        stunURI = ("stun" / "stuns") ":" host [":" port]
        turnURI = ("turn" / "turns") ":" host [":" port] ["?transport=" ("udp" / "tcp")]

    ``turns:…?transport=udp`` (TURN over DTLS) is grammatical but rejected: no browser
    implements it, so handing it to clients would only produce a dead ICE server.
    """
    scheme_text, sep, rest = text.partition(":")
    typed_scheme = _SCHEMES.get(scheme_text.lower())
    if not sep or typed_scheme is None:
        raise ValueError(f"{text!r}: scheme must be one of stun:, stuns:, turn:, turns:")
    if rest.startswith("//"):
        raise ValueError(f"{text!r}: STUN/TURN URIs have no '//' (write {typed_scheme}:host:port)")

    authority, qmark, query = rest.partition("?")
    explicit_transport = bool(qmark)
    if typed_scheme in ("stuns", "turns"):
        transport: Transport = "tcp"
    else:
        transport = "udp"
    if explicit_transport:
        if typed_scheme in ("stun", "stuns"):
            raise ValueError(f"{text!r}: stun: URIs take no ?transport= (RFC 7064)")
        key, eq, value = query.partition("=")
        if key != "transport" or not eq or value not in ("udp", "tcp"):
            raise ValueError(
                f"{text!r}: the only query allowed is ?transport=udp or ?transport=tcp"
            )
        if typed_scheme == "turns" and value == "udp":
            raise ValueError(f"{text!r}: turns: over udp (DTLS) is not supported by browsers")
        transport = "tcp" if value == "tcp" else "udp"

    host, port_text = _split_host_port(text, authority)
    default = DEFAULT_TLS_PORT if typed_scheme in ("stuns", "turns") else DEFAULT_PORT
    port = default
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: port must be a number from 1 to 65535")
        port = int(port_text)
    return IceUri(
        scheme=typed_scheme,
        host=host,
        port=port,
        transport=transport,
        explicit_transport=explicit_transport,
        explicit_port=port_text is not None,
    )


def _split_host_port(text: str, authority: str) -> tuple[str, str | None]:
    """Split ``host[:port]`` where host may be a bracketed IPv6 literal."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: unterminated IPv6 literal")
        literal = authority[1:end]
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise ValueError(f"{text!r}: {literal!r} is not an IPv6 address") from None
        tail = authority[end + 1 :]
        if tail and not tail.startswith(":"):
            raise ValueError(f"{text!r}: unexpected text after the IPv6 literal")
        return literal, (tail[1:] if tail else None)
    host, colon, port_text = authority.partition(":")
    if not host:
        raise ValueError(f"{text!r}: no host")
    if not _HOSTNAME.match(host):
        raise ValueError(f"{text!r}: {host!r} is not a host name or IPv4 address")
    return host, (port_text if colon else None)
