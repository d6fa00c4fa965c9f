"""Ephemeral TURN credentials (the "TURN REST API" scheme) and the ``ice_servers`` of ``welcome``.

Why ephemeral: a static TURN password handed to browsers is public the moment the page loads,
and anyone holding it can relay arbitrary traffic through our servers forever. With the TURN REST
scheme (draft-uberti-behave-turn-rest-00, implemented by coturn's ``use-auth-secret``) the
signaling server and coturn share a secret and never talk to each other: signaling mints

    username   = "<expiry unix time>:<user>"
    credential = base64(HMAC-SHA1(shared secret, username))

and coturn recomputes the HMAC for every request, refusing usernames whose expiry has passed.
A leaked credential is good for one TTL only. Everything here is pure (the clock is passed in),
so it is tested without a server.

Rotation: coturn accepts every ``static-auth-secret`` line it is given. Put the new secret in
coturn first (next to the old one), then make it the *first* of ``IceConfig.turn_secrets`` —
the first secret signs, the others exist only so that both sides can be updated one at a time.
Drop the old secret from coturn once the last credential signed with it has expired (one TTL).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from signaling.core.config import IceConfig
from signaling.turn.uris import parse_ice_uri

#: Default lifetime of a credential: long enough for a long meeting (ICE restarts reuse the
#: credential), short enough that a leaked one is soon worthless.
DEFAULT_TTL = 4 * 3600
#: Longest lifetime we mint. Anything longer is a standing password in disguise; rotate the
#: secret instead if credentials must outlive a day.
MAX_TTL = 24 * 3600
#: Longest user part once escaped. STUN USERNAME must stay under 509 bytes (RFC 8489 §14.3);
#: 256 leaves room for the expiry and the separator with a wide margin.
MAX_USER_LENGTH = 256
#: coturn's ``rest-api-separator`` default; we keep it.
SEPARATOR = ":"

# Characters kept as they are in the user part; everything else is percent-encoded.
_USER_SAFE = "-._~@+"
# A secret ends up on a ``static-auth-secret=`` line of turnserver.conf and in a comma-separated
# environment variable: no whitespace (a newline would inject configuration), no quotes or
# backslashes (coturn strips quotes), no '#' (comments), no ',' (our list separator).
_SECRET_CHARS = frozenset(set(string.printable) - set(string.whitespace) - set("\"'#,\\"))


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    """One ephemeral TURN username/credential pair."""

    #: ``"<expires_at>:<escaped user>"``, sent by the client as the STUN USERNAME.
    username: str
    #: ``base64(HMAC-SHA1(secret, username))``, the client's TURN password.
    credential: str
    #: Seconds the pair was minted for.
    ttl: int
    #: Unix time after which coturn refuses the pair.
    expires_at: int


def check_secret(secret: str) -> None:
    """Raise :class:`ValueError` unless ``secret`` can be written safely in turnserver.conf.

    The message never repeats the secret: it ends up in logs and terminals.
    """
    if not secret:
        raise ValueError("TURN secret is empty")
    bad = {c for c in secret if c not in _SECRET_CHARS}
    if bad:
        raise ValueError(
            "TURN secret may only contain printable ASCII without whitespace, quotes, "
            "backslash, '#' or ',' (generate one with `openssl rand -hex 32`)"
        )


def escape_user(user: str) -> str:
    """Percent-encode ``user`` so the username stays unambiguous, ASCII and log-safe.

    Why: coturn takes the expiry from the digits before the *first* ':' so a ':' in the user
    would still verify, but other TURN servers and every log parser split on it; a newline
    would forge coturn log lines; non-ASCII would go through SASLprep on some clients and not
    on others and break MESSAGE-INTEGRITY. Percent-encoding (``%`` itself included) is
    injective, so distinct users never share a username, and :func:`unescape_user` undoes it.
    """
    if not user:
        raise ValueError("TURN user is empty")
    escaped = quote(user, safe=_USER_SAFE)
    if len(escaped) > MAX_USER_LENGTH:
        raise ValueError(f"TURN user is too long ({len(escaped)} > {MAX_USER_LENGTH} once escaped)")
    return escaped


def unescape_user(escaped: str) -> str:
    """Inverse of :func:`escape_user` (for logs and tooling)."""
    return unquote(escaped)


def sign(secret: str, username: str) -> str:
    """``base64(HMAC-SHA1(secret, username))``, exactly as coturn computes it."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def make_credentials(secret: str, user: str, ttl: int, now: float) -> TurnCredentials:
    """Mint credentials for ``user`` valid from ``now`` for ``ttl`` seconds.

    ``ttl`` must be in ``1..MAX_TTL``; ``user`` is escaped with :func:`escape_user`; the secret
    is checked with :func:`check_secret`. Raises :class:`ValueError` on any of these.
    """
    check_secret(secret)
    if not 0 < ttl <= MAX_TTL:
        raise ValueError(f"TURN credential TTL must be 1..{MAX_TTL} s, not {ttl}")
    expires_at = int(now) + ttl
    username = f"{expires_at}{SEPARATOR}{escape_user(user)}"
    return TurnCredentials(
        username=username, credential=sign(secret, username), ttl=ttl, expires_at=expires_at
    )


def check_ice_config(ice: IceConfig) -> None:
    """Raise :class:`ValueError` listing every problem of ``ice``; call it at startup.

    :func:`ice_servers` runs on every ``welcome``; a misconfiguration should stop the process
    when it starts, not fail the first join.
    """
    problems: list[str] = []
    for url in ice.stun_urls:
        try:
            if parse_ice_uri(url).is_turn:
                problems.append(f"{url!r} is a TURN URL in stun_urls")
        except ValueError as exc:
            problems.append(str(exc))
    for url in ice.turn_urls:
        try:
            if not parse_ice_uri(url).is_turn:
                problems.append(f"{url!r} is a STUN URL in turn_urls")
        except ValueError as exc:
            problems.append(str(exc))
    if ice.turn_urls and not ice.turn_secrets:
        problems.append("turn_urls are set but turn_secrets is empty")
    for index, secret in enumerate(ice.turn_secrets):
        try:
            check_secret(secret)
        except ValueError as exc:
            problems.append(f"turn_secrets[{index}]: {exc}")
    if not 0 < ice.turn_ttl <= MAX_TTL:
        problems.append(f"turn_ttl must be 1..{MAX_TTL} s, not {ice.turn_ttl}")
    if problems:
        raise ValueError("invalid ICE configuration: " + "; ".join(problems))


def ice_servers(ice: IceConfig, user: str, now: float) -> list[dict[str, Any]]:
    """The ``iceServers`` list (W3C ``RTCIceServer`` JSON) for ``welcome``.

    One entry for all STUN URLs, one for all TURN URLs carrying fresh credentials signed with
    the first of ``ice.turn_secrets``; entries without URLs are left out, so an unconfigured
    node returns ``[]`` (host candidates only). ``user`` should identify the participant
    (the peer id): it shows up in coturn's logs and quotas. Raises :class:`ValueError` on a
    misconfiguration that :func:`check_ice_config` would have reported.
    """
    servers: list[dict[str, Any]] = []
    if ice.stun_urls:
        servers.append({"urls": list(ice.stun_urls)})
    if ice.turn_urls:
        if not ice.turn_secrets:
            raise ValueError("turn_urls are set but turn_secrets is empty")
        creds = make_credentials(ice.turn_secrets[0], user, ice.turn_ttl, now)
        servers.append(
            {
                "urls": list(ice.turn_urls),
                "username": creds.username,
                "credential": creds.credential,
            }
        )
    return servers
