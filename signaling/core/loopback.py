"""The one rule for "is this host loopback?", shared by the serve check, the admin CLI and the
load test. Pure: no resolution (the load test resolves first and asks about each address).

Loopback is ``localhost`` (any case, with or without the trailing dot, RFC 6761) or an IP
literal in 127.0.0.0/8 or ``::1``, also written as a URL host (``[::1]``) or with an IPv6 zone
(``::1%lo``). Anything else is not: names that merely resolve to loopback today, and
IPv4-mapped addresses (``::ffff:127.0.0.1``) — these guards err on the safe side, as the load
test's always did (the three copies this replaces disagreed on brackets, zones and
``localhost``).
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    if host.rstrip(".").lower() == "localhost":
        return True
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    literal = literal.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(literal)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return False  # Python 3.13 calls these loopback; the rule stays the same on every version
    return address.is_loopback
