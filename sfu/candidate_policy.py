"""Which remote ICE candidates the SFU may send connectivity checks to. No I/O.

ICE (RFC 8445 section 6.1.2) makes an agent send STUN binding requests to every address the
remote side names in a candidate. For a server that is an SSRF primitive: a client that names
``10.0.0.5:6379`` or ``169.254.169.254:80`` makes the SFU send datagrams into the operator's
own network, and a ``.local`` name makes aioice resolve it by multicast DNS on the server's
network. This policy decides, before aioice ever sees a candidate, whether its address may be
contacted: by default only globally routable unicast addresses may; the operator can allow
ranges (``--ice-allow-peer CIDR``, e.g. a LAN deployment, or loopback for development).

Refused by default (IANA special-purpose registries, RFC 6890 and successors):

========================  ===============================================================
category                  ranges
========================  ===============================================================
``metadata``              169.254.169.254/32, fd00:ec2::254/128 (cloud instance metadata)
``unspecified``           0.0.0.0/8, ::/128
``loopback``              127.0.0.0/8, ::1/128
``private``               10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 (RFC 1918),
                          fc00::/7 (RFC 4193), fec0::/10 (old site-local), 64:ff9b:1::/48
``cgnat``                 100.64.0.0/10 (RFC 6598 shared address space)
``link-local``            169.254.0.0/16, fe80::/10
``multicast``             224.0.0.0/4, ff00::/8
``reserved``              192.0.0.0/24, 198.18.0.0/15, 240.0.0.0/4 (with 255.255.255.255),
                          ::/8 and 100::/64 (what the rows above leave of them)
``hostname``              anything that is not an IP literal; ``.local`` names (RFC 6762
                          mDNS, as browsers hide host addresses) are ``mdns``
========================  ===============================================================

IPv6 addresses that embed an IPv4 address (IPv4-mapped ``::ffff:0:0/96``, NAT64
``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by the IPv4 address they lead to.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Ranges refused unless allowed, most specific first (the first match names the category).
REFUSED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), category)
    for cidr, category in (
        ("169.254.169.254/32", "metadata"),
        ("fd00:ec2::254/128", "metadata"),
        ("0.0.0.0/8", "unspecified"),
        ("::/128", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("::1/128", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("fc00::/7", "private"),
        ("fec0::/10", "private"),
        ("64:ff9b:1::/48", "private"),
        ("100.64.0.0/10", "cgnat"),
        ("169.254.0.0/16", "link-local"),
        ("fe80::/10", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("ff00::/8", "multicast"),
        ("192.0.0.0/24", "reserved"),
        ("198.18.0.0/15", "reserved"),
        ("240.0.0.0/4", "reserved"),
        ("100::/64", "reserved"),
        ("::/8", "reserved"),
    )
)

#: What ``--ice-allow-peer`` would have to name for loopback peers (dev mode allows these).
LOOPBACK_NETWORKS: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CANDIDATE_ATTRIBUTE = "a=candidate:"
_END_OF_CANDIDATES = "a=end-of-candidates"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a candidate address may not be contacted."""

    #: The address as the candidate wrote it.
    address: str
    #: One of the categories of the module table (``private``, ``loopback``, ``mdns``…).
    category: str

    def __str__(self) -> str:
        return f"candidate address {self.address} refused ({self.category})"


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``--ice-allow-peer`` values as networks; ``ValueError`` names the first bad one.

    Host bits must be clear (``10.0.0.0/8``, not ``10.0.0.1/8``): a typo must not widen a range
    silently. A bare address is a one-address network.
    """
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=True))
        except ValueError as exc:
            raise ValueError(f"{cidr!r} is not a CIDR network: {exc}") from None
    return tuple(networks)


class CandidatePolicy:
    """Decides which remote candidate addresses ICE may send checks to."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        #: Ranges the operator allowed; an address inside one is never refused.
        self.allowed: tuple[IPNetwork, ...] = parse_networks(allow)

    def check(self, host: str) -> Refusal | None:
        """``None`` if ICE may contact ``host``, else why not."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            name = "mdns" if host.lower().rstrip(".").endswith(".local") else "hostname"
            return Refusal(host, name)
        category = self._category(address)
        return None if category is None else Refusal(host, category)

    def _category(self, address: IPAddress) -> str | None:
        if self._allowed(address):
            return None
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return self._category(embedded)
        for network, category in REFUSED:
            if address.version == network.version and address in network:
                return category
        return None

    def _allowed(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.allowed)

    def filter_sdp(self, sdp: str) -> tuple[str, list[Refusal]]:
        """Drop the ``a=candidate`` lines whose address is refused; keep every other byte.

        A browser's offer or answer may list its private host addresses next to usable
        server-reflexive and relay ones: only the refused lines go, the description stays
        usable. Line ends are kept as they were.

        When a line is refused, ``a=end-of-candidates`` goes too. With end-of-candidates and
        nothing left to check, an ICE agent fails at once (aioice does); without it, the agent
        waits, and the client's own checks, which reach the SFU from whatever address its NAT
        gives it, still make a peer-reflexive pair (RFC 8445 section 7.3.1.3). A browser whose
        only candidates are private host addresses (no STUN server configured) connects to a
        public SFU that way.

        Lines are split and read exactly as aiortc's parser does (``str.splitlines``, the
        address is the fifth whitespace-separated field), so no line reaches aiortc with an
        address this function did not judge. A candidate line too short to have an address is
        dropped too (aiortc would fail on it).
        """
        if _CANDIDATE_ATTRIBUTE not in sdp:
            return sdp, []  # trickle ICE: browsers' descriptions usually carry no candidate
        kept: list[str] = []
        refused: list[Refusal] = []
        for line in sdp.splitlines(keepends=True):
            if line.startswith(_CANDIDATE_ATTRIBUTE):
                fields = line[len(_CANDIDATE_ATTRIBUTE) :].split()
                refusal = self.check(fields[4]) if len(fields) > 4 else Refusal("", "malformed")
                if refusal is not None:
                    refused.append(refusal)
                    continue
            kept.append(line)
        if refused:
            kept = [line for line in kept if line.rstrip("\r\n") != _END_OF_CANDIDATES]
        return "".join(kept), refused


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 (well-known prefix) or 6to4 address leads to."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour
