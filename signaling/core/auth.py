"""Access tokens: who may join which room with which grants.

Tokens are JWTs (HS256) signed with a key chosen by ``kid``, so keys rotate without a flag day:
add the new key, sign with it, drop the old one after the longest token lifetime. Claims:

* ``sub`` — identity (shown to operators; not the peer id, which the server issues),
* ``name`` — display name (overrides the name in ``join``),
* ``room`` — a room name or a glob pattern (``team-*``),
* ``grants`` — ``publish``, ``subscribe``, ``signal`` (peer-to-peer relay), ``data`` (application
  messages and chat; ``signal`` allows them too), ``admin``,
* ``exp`` (required), ``nbf``, ``iat``.

Without keys the server runs in dev mode: every join is allowed with every grant, and the
server only binds loopback (see ``signaling.tools.cli``).
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field

import jwt

from signaling.core.codes import Close, CloseCode, Err, ErrorCode
from signaling.core.errors import PeerError
from signaling.core.protocol import (
    Candidate,
    ClientMessage,
    Data,
    Publish,
    SetSubscription,
    Signal,
    SubscriberAnswer,
    TrackState,
    Unpublish,
)
from signaling.core.protocol import unsafe_text as _unsafe_name

ALGORITHM = "HS256"
ALL_GRANTS = frozenset({"publish", "subscribe", "signal", "data", "admin"})
DEFAULT_GRANTS = frozenset({"publish", "subscribe", "signal", "data"})


class AuthError(PeerError):
    def __init__(self, close: CloseCode, error: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.close = close
        self.error = error
        self.message = message


@dataclass(frozen=True, slots=True)
class Identity:
    identity: str
    name: str | None
    room: str
    grants: frozenset[str] = field(default_factory=lambda: DEFAULT_GRANTS)

    def may(self, grant: str) -> bool:
        return grant in self.grants


def missing_grant(message: ClientMessage, grants: frozenset[str]) -> str | None:
    """The grant ``message`` needs and ``grants`` lack (None: allowed). The hub checks this
    before anything is relayed or reaches the SFU; ``data`` is peer messaging, so ``signal``
    allows it too."""
    match message:
        case Signal():
            needed: tuple[str, ...] = ("signal",)
        case Data():
            needed = ("data", "signal")
        case Publish() | Unpublish() | TrackState():
            needed = ("publish",)
        case SubscriberAnswer() | SetSubscription():
            needed = ("subscribe",)
        case Candidate(target=target):
            needed = ("publish",) if target == "publisher" else ("subscribe",)
        case _:
            return None
    return None if grants.intersection(needed) else needed[0]


#: What a dev-mode join gets: everything except admin.
DEV_IDENTITY_GRANTS = DEFAULT_GRANTS


class TokenVerifier:
    """Verifies access tokens against a set of keys named by ``kid``."""

    def __init__(self, keys: dict[str, str], *, leeway: float = 5.0) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        for kid, secret in keys.items():
            if len(secret) < 32:
                raise ValueError(f"key {kid!r} is shorter than 32 characters")
        self._keys = dict(keys)
        self._leeway = leeway

    def verify(self, token: str | None, room: str) -> Identity:
        if not token:
            raise AuthError(Close.UNAUTHORIZED, Err.UNAUTHORIZED, "an access token is required")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            secret = self._keys.get(kid) if isinstance(kid, str) else None
            if secret is None:
                raise AuthError(Close.UNAUTHORIZED, Err.UNAUTHORIZED, "unknown signing key")
            claims = jwt.decode(
                token, secret, algorithms=[ALGORITHM], leeway=self._leeway,
                options={"require": ["exp", "sub", "room"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(Close.UNAUTHORIZED, Err.UNAUTHORIZED, "the access token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(Close.UNAUTHORIZED, Err.UNAUTHORIZED, f"invalid access token: {exc}") from None
        pattern = claims.get("room")
        if not isinstance(pattern, str) or not fnmatch.fnmatchcase(room, pattern):
            raise AuthError(Close.FORBIDDEN, Err.FORBIDDEN, f"the token does not grant room {room}")
        grants = claims.get("grants", sorted(DEFAULT_GRANTS))
        if not isinstance(grants, list) or not all(isinstance(g, str) for g in grants):
            raise AuthError(Close.UNAUTHORIZED, Err.UNAUTHORIZED, "invalid grants claim")
        name = claims.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 64 or _unsafe_name(name)):
            raise AuthError(Close.UNAUTHORIZED, Err.UNAUTHORIZED, "invalid name claim (at most 64 characters, no control or bidi characters)")
        return Identity(
            identity=str(claims["sub"]),
            name=name if isinstance(name, str) else None,
            room=room,
            grants=frozenset(grants) & ALL_GRANTS,
        )


def create_token(
    secret: str,
    *,
    identity: str,
    room: str,
    grants: frozenset[str] | set[str] = DEFAULT_GRANTS,
    name: str | None = None,
    ttl: int = 3600,
    kid: str = "k1",
    now: float | None = None,
) -> str:
    """Sign an access token (for `switchboard admin token create` and for app backends)."""
    unknown = set(grants) - ALL_GRANTS
    if unknown:
        raise ValueError(f"unknown grants: {sorted(unknown)}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "sub": identity, "room": room, "grants": sorted(grants), "iat": issued, "nbf": issued, "exp": issued + ttl,
    }
    if name is not None:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": kid})
