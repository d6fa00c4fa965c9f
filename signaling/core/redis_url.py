"""Redis URLs of a cluster, parsed without I/O (the configuration check uses this).

Forms::

    redis://[[user]:password@]host[:port][/db]          one server (redis-py's own URL syntax;
    rediss://...  unix://...                             TLS and unix sockets as redis-py reads them)
    redis+sentinel://[[user]:password@]h1[:port],h2[:port],.../service[/db][?options]

In the Sentinel form the hosts are the *sentinels* (default port 26379), ``service`` is the name
the sentinels monitor (``sentinel monitor <service> ...``), ``user``/``password`` authenticate to
the Redis servers (primary and replicas), and the query options ``sentinel_user`` /
``sentinel_password`` authenticate to the sentinels (``requirepass`` in sentinel.conf). IPv6
hosts go in brackets: ``[::1]:26379``. TLS to sentinels is not supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
_PLAIN_SCHEMES = ("redis", "rediss", "unix")
_SENTINEL_OPTIONS = ("sentinel_user", "sentinel_password")


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """A parsed ``redis+sentinel://`` URL."""

    #: (host, port) of each sentinel, in the order given.
    sentinels: tuple[tuple[str, int], ...]
    #: The name the sentinels monitor (``sentinel monitor <service> ...``).
    service: str
    #: Database number on the primary.
    db: int = 0
    #: Credentials for the Redis servers (primary and replicas).
    username: str | None = None
    password: str | None = None
    #: Credentials for the sentinels themselves.
    sentinel_username: str | None = None
    sentinel_password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.partition("://")[0].lower() == SENTINEL_SCHEME


def _host_port(item: str, url: str) -> tuple[str, int]:
    if item.startswith("["):
        host, sep, rest = item[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad sentinel address {item!r} in {redact(url)}")
        port_text = rest[1:]
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"empty sentinel host in {redact(url)}")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad sentinel port {port_text!r} in {redact(url)}")
    return host, int(port_text)


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse ``redis+sentinel://[[user]:password@]h1[:port],h2[:port]/service[/db][?options]``.

    Raises :class:`ValueError` naming what is wrong (with the passwords masked).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL: {redact(url)}")
    # urlsplit cannot take a comma-separated host list with ports; split by hand.
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        # As in redis-py's own URLs: ``user@`` is a user name alone, ``:secret@`` a password alone.
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(item.strip(), url) for item in hosts.split(",") if item.strip())
    if not sentinels:
        raise ValueError(f"no sentinel hosts in {redact(url)}")
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise ValueError(f"no service name in {redact(url)} (expected .../<service>[/<db>])")
    if len(parts) > 2:
        raise ValueError(f"too many path parts in {redact(url)} (expected .../<service>[/<db>])")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError(f"bad database number {parts[1]!r} in {redact(url)}")
        db = int(parts[1])
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - set(_SENTINEL_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} in {redact(url)} (known: {', '.join(_SENTINEL_OPTIONS)})")
    return SentinelUrl(
        sentinels=sentinels,
        service=unquote(parts[0]),
        db=db,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_user", [None])[-1] or None,
        sentinel_password=options.get("sentinel_password", [None])[-1] or None,
    )


def check_url(url: str) -> str | None:
    """What is wrong with a Redis URL (None: nothing), for the configuration check."""
    scheme = url.partition("://")[0].lower()
    if scheme == SENTINEL_SCHEME:
        try:
            parse_sentinel_url(url)
        except ValueError as exc:
            return str(exc)
        return None
    if scheme not in _PLAIN_SCHEMES or "://" not in url:
        return f"expected redis://, rediss://, unix:// or {SENTINEL_SCHEME}://, got {redact(url)}"
    return None


def redact(url: str) -> str:
    """``url`` with its passwords masked, for logs and error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at and userinfo:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:****@{hosts}" if colon else f"****@{hosts}"
    if "sentinel_password=" in tail:
        path, _, query = tail.partition("?")
        query = "&".join("sentinel_password=****" if q.startswith("sentinel_password=") else q for q in query.split("&"))
        tail = f"{path}?{query}"
    return f"{scheme}{sep}{netloc}{slash}{tail}"


def resolve_wait_replicas(setting: int | None, url: str) -> int:
    """``cluster.ledger_wait_replicas`` as used: None means 1 behind Sentinel (a failover can
    happen, and a replica exists to wait for), 0 with one server."""
    if setting is not None:
        return setting
    return 1 if is_sentinel_url(url) else 0
