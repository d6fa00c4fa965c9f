"""The client address of a request that may have come through reverse proxies. No I/O.

``X-Forwarded-For`` is a list each proxy appends the address it received the request from to;
anyone can write its left part. So it is believed only hop by hop from the right: starting at the
TCP peer, while the address in hand is a trusted proxy, step one entry to the left. The first
address that is not a trusted proxy is the client (the "rightmost untrusted" address). A peer that
is not a trusted proxy is the client itself and its header is ignored entirely.

A malformed entry can only be reached through a trusted proxy that wrote it (or passed it on); the
walk stops there and the client is the last good address (the proxy that wrote it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """CIDR ranges (a bare address is a /32 or /128). Raises ``ValueError`` for a bad one."""
    return tuple(ipaddress.ip_network(cidr, strict=True) for cidr in cidrs)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6] or [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """Which peers may tell us the client's address, and the client address they tell."""

    def __init__(self, cidrs: Iterable[str] = ()) -> None:
        self.networks = parse_networks(cidrs)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        parsed = _address(address)
        return parsed is not None and any(parsed in net for net in self.networks)

    def client_address(self, peer: str, forwarded_for: Sequence[str] = ()) -> str:
        """The client behind ``peer`` given every ``X-Forwarded-For`` header value, in order."""
        if not self.networks or not self.trusts(peer):
            return peer
        hops = [entry for value in forwarded_for for entry in value.split(",")]
        client = peer
        for entry in reversed(hops):
            parsed = _address(entry)
            if parsed is None:
                return client
            client = str(parsed)
            if not any(parsed in net for net in self.networks):
                return client
        # Every hop is a trusted proxy: the leftmost one is the best we know.
        return client
