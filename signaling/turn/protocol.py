"""Sans-I/O part of a minimal STUN/TURN client: requests, long-term authentication, errors.

Why not aioice's TURN client: it is built to carry media (it starts a refresh task and binds
channels on its own), it drops unsigned error responses — so a ``403 Forbidden IP`` to a
CreatePermission surfaces as a timeout — and it cannot say *why* an allocation failed. A
diagnostic tool needs every answer as it came. We still use aioice's message codec
(:mod:`aioice.stun`), which is well tested; this module only decides what to send and what an
answer means, so it is unit-tested without sockets (see :mod:`signaling.turn.client` for I/O).

References: RFC 8489 (STUN) §9.2 long-term credentials, RFC 8656 (TURN) §7 Allocate, §9
CreatePermission, §7.1/§8 Refresh.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from aioice import stun

from signaling.core.errors import PeerError

#: REQUESTED-TRANSPORT value for UDP relaying (protocol 17 in the high byte, RFC 8656 §14.7).
REQUESTED_TRANSPORT_UDP = 0x11000000
#: Allocation lifetime we ask for; a check releases it at once anyway (RFC 8656 §7.2: 600 s).
DEFAULT_LIFETIME = 600

#: What a TURN error code usually means for an operator (RFC 8656 §19, RFC 8489 §14.8).
ERROR_HINTS: dict[int, str] = {
    400: "the server could not parse the request",
    401: "wrong secret or expired credentials (compare the secret with coturn's "
    "static-auth-secret, and both machines' clocks)",
    403: "forbidden by the server's policy (for a peer: a denied-peer-ip range)",
    420: "the server does not support an attribute we sent",
    437: "allocation mismatch (a previous allocation from this address still exists)",
    438: "stale nonce",
    440: "address family not supported",
    441: "wrong credentials for an existing allocation",
    442: "unsupported transport protocol",
    486: "allocation quota reached (user-quota or total-quota)",
    508: "insufficient capacity (relay port range exhausted?)",
}


class StunClientError(PeerError):
    """Root of the errors of this client."""


class ErrorResponse(StunClientError):
    """The server answered with a STUN error response."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        hint = ERROR_HINTS.get(self.code)
        text = f"{self.code} {self.reason}".strip()
        return f"{text} — {hint}" if hint else text


class NoResponse(StunClientError):
    """No answer before the deadline."""


class BadResponse(StunClientError):
    """An answer we cannot trust or use (missing attributes, not signed with our key)."""


def binding_request() -> stun.Message:
    """A Binding request (RFC 8489 §6): the server answers with our reflexive address."""
    return stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)


def allocate_request(lifetime: int = DEFAULT_LIFETIME) -> stun.Message:
    """An Allocate request for a UDP relay (RFC 8656 §7.1)."""
    message = stun.Message(message_method=stun.Method.ALLOCATE, message_class=stun.Class.REQUEST)
    message.attributes["LIFETIME"] = lifetime
    message.attributes["REQUESTED-TRANSPORT"] = REQUESTED_TRANSPORT_UDP
    return message


def create_permission_request(peer: tuple[str, int]) -> stun.Message:
    """A CreatePermission request for ``peer``'s IP (RFC 8656 §9.1; the port is ignored)."""
    message = stun.Message(
        message_method=stun.Method.CREATE_PERMISSION, message_class=stun.Class.REQUEST
    )
    message.attributes["XOR-PEER-ADDRESS"] = peer
    return message


def refresh_request(lifetime: int) -> stun.Message:
    """A Refresh request; ``lifetime=0`` deletes the allocation (RFC 8656 §8)."""
    message = stun.Message(message_method=stun.Method.REFRESH, message_class=stun.Class.REQUEST)
    message.attributes["LIFETIME"] = lifetime
    return message


def make_integrity_key(username: str, realm: str, password: str) -> bytes:
    """Long-term credential key: MD5(username ":" realm ":" password) (RFC 8489 §9.2.2)."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()


def error_of(response: stun.Message) -> ErrorResponse:
    """The :class:`ErrorResponse` an error-class ``response`` stands for."""
    code, reason = response.attributes.get("ERROR-CODE", (0, "error response without ERROR-CODE"))
    return ErrorResponse(int(code), str(reason))


@dataclass(slots=True)
class LongTermAuth:
    """Long-term credential state of one client (RFC 8489 §9.2).

    The first request goes out unsigned; the server's 401 carries REALM and NONCE, from which
    every later request is signed. A 438 (stale nonce) only renews the nonce. A 401 to a signed
    request means the credentials are wrong: no retry.
    """

    username: str
    password: str
    realm: str | None = None
    nonce: bytes | None = None
    key: bytes | None = field(default=None, repr=False)

    def prepare(self, message: stun.Message) -> stun.Message:
        """Sign ``message`` if we know the realm and nonce, and add FINGERPRINT in any case."""
        if self.key is not None:
            message.attributes["USERNAME"] = self.username
            message.attributes["REALM"] = self.realm
            message.attributes["NONCE"] = self.nonce
            message.add_message_integrity(self.key)  # adds FINGERPRINT after it
        else:
            message.add_fingerprint()
        return message

    def should_retry(self, response: stun.Message, *, signed: bool) -> bool:
        """Learn from an error ``response``; True when resending the request may succeed."""
        code = response.error_code
        nonce = response.attributes.get("NONCE")
        realm = response.attributes.get("REALM")
        if code == 401 and not signed and nonce is not None and realm is not None:
            self.realm, self.nonce = str(realm), bytes(nonce)
            self.key = make_integrity_key(self.username, self.realm, self.password)
            return True
        if code == 438 and nonce is not None and self.key is not None:
            self.nonce = bytes(nonce)
            if realm is not None and realm != self.realm:
                self.realm = str(realm)
                self.key = make_integrity_key(self.username, self.realm, self.password)
            return True
        return False

    def authentic(self, response: stun.Message) -> bool:
        """A success response to a signed request must be signed with the same key (§9.2.5)."""
        return self.key is not None and response.check_message_integrity(self.key)


@dataclass(frozen=True, slots=True)
class Allocation:
    """What a successful Allocate response told us."""

    #: The relayed transport address, where peers send to reach us.
    relayed: tuple[str, int]
    #: Our address as the server saw it (server-reflexive).
    mapped: tuple[str, int]
    #: Seconds until the allocation expires unless refreshed.
    lifetime: int


def parse_allocation(response: stun.Message) -> Allocation:
    """Read an Allocate success response (RFC 8656 §7.3), or raise :class:`BadResponse`."""
    attrs = response.attributes
    missing = [
        n for n in ("XOR-RELAYED-ADDRESS", "XOR-MAPPED-ADDRESS", "LIFETIME") if n not in attrs
    ]
    if missing:
        raise BadResponse(f"Allocate response without {', '.join(missing)}")
    return Allocation(
        relayed=_address(attrs["XOR-RELAYED-ADDRESS"]),
        mapped=_address(attrs["XOR-MAPPED-ADDRESS"]),
        lifetime=int(attrs["LIFETIME"]),
    )


def mapped_address(response: stun.Message) -> tuple[str, int]:
    """The reflexive address of a Binding success response (XOR-MAPPED-ADDRESS, or the old one)."""
    for name in ("XOR-MAPPED-ADDRESS", "MAPPED-ADDRESS"):
        if name in response.attributes:
            return _address(response.attributes[name])
    raise BadResponse("Binding response without XOR-MAPPED-ADDRESS")


def _address(value: Any) -> tuple[str, int]:
    """aioice decodes address attributes as ``(host, port)`` tuples; make the type explicit."""
    host, port = value
    return (str(host), int(port))
