"""Render coturn's ``turnserver.conf`` from Switchboard's settings.

Why a renderer and not a hand-kept file: the parts that matter for security (which peers a
client may relay to, TLS versions, the admin console) must be identical on every deployment,
and the parts that differ (addresses, ports, secrets) must be validated before coturn reads
them — coturn ignores or half-applies much of what it does not understand. The template holds
the fixed text and its comments (turn-config/turnserver.conf.template, shipped in the wheel as
``signaling/_turn_config/``); this module holds the rules and the variable blocks.

Two profiles:

* ``production`` denies every private, loopback, link-local (cloud metadata) and otherwise
  special address as a relay peer, requires TLS, and refuses short secrets.
* ``test`` is for a coturn on loopback in the test suite: no TLS, loopback peers allowed
  (``allow-loopback-peers``), and for that reason it refuses to listen or relay anywhere but
  on loopback addresses.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from signaling.turn.credentials import check_secret

TEMPLATE_NAME = "turnserver.conf.template"
#: Shortest secret the production profile accepts (32 hex digits = 128 bits).
MIN_PRODUCTION_SECRET_LENGTH = 32

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Profile(enum.StrEnum):
    """Which coturn deployment the configuration is for."""

    PRODUCTION = "production"
    TEST = "test"


@dataclass(frozen=True, slots=True)
class DeniedRange:
    """An address range no client may relay to in production, and why."""

    network: IPNetwork
    reason: str
    #: Loopback: the only ranges the test profile lets through.
    loopback: bool = False


def _denied(cidr: str, reason: str, *, loopback: bool = False) -> DeniedRange:
    return DeniedRange(ipaddress.ip_network(cidr), reason, loopback)


#: Peer ranges denied to relays (RFC 6890 special-purpose registries, plus the usual suspects).
#:
#: ``::/128`` is missing on purpose: coturn reads an all-zero bound as "unbounded", so
#: ``denied-peer-ip=::`` denies *every* peer (checked against coturn 4.6.1). Our relays are
#: IPv4 unless an operator adds IPv6 relay-ips, and an IPv4 relay refuses IPv6 peers (443).
DENIED_PEER_RANGES: tuple[DeniedRange, ...] = (
    _denied("0.0.0.0/8", "'this' network; 0.0.0.0 reaches local services on Linux"),
    _denied("10.0.0.0/8", "RFC 1918 private"),
    _denied("100.64.0.0/10", "RFC 6598 carrier-grade NAT shared space"),
    _denied("127.0.0.0/8", "loopback: services on the TURN host itself", loopback=True),
    _denied("169.254.0.0/16", "link-local, incl. the cloud metadata service 169.254.169.254"),
    _denied("172.16.0.0/12", "RFC 1918 private"),
    _denied("192.0.0.0/24", "IETF protocol assignments"),
    _denied("192.0.2.0/24", "TEST-NET-1 documentation"),
    _denied("192.88.99.0/24", "deprecated 6to4 relay anycast"),
    _denied("192.168.0.0/16", "RFC 1918 private"),
    _denied("198.18.0.0/15", "benchmarking"),
    _denied("198.51.100.0/24", "TEST-NET-2 documentation"),
    _denied("203.0.113.0/24", "TEST-NET-3 documentation"),
    _denied("240.0.0.0/4", "reserved, and 255.255.255.255 broadcast"),
    _denied("::1/128", "IPv6 loopback", loopback=True),
    _denied("::ffff:0:0/96", "IPv4-mapped: would bypass every IPv4 rule above"),
    _denied("64:ff9b::/96", "NAT64: would reach private IPv4 through a NAT64 gateway"),
    _denied("64:ff9b:1::/48", "local-use NAT64"),
    _denied("100::/64", "discard-only"),
    _denied("2001::/23", "IETF protocol assignments (Teredo, ORCHID, …)"),
    _denied("2001:db8::/32", "documentation"),
    _denied("2002::/16", "6to4: embeds arbitrary IPv4 addresses"),
    _denied("fc00::/7", "unique local addresses (IPv6 private)"),
    _denied("fe80::/10", "IPv6 link-local"),
)


@dataclass(frozen=True, slots=True)
class CoturnSettings:
    """Everything that varies between coturn deployments."""

    #: The TURN realm (usually the TURN server's DNS name); clients learn it from coturn.
    realm: str
    #: Shared secrets, the one Switchboard signs with first. Several = rotation in progress.
    secrets: tuple[str, ...]
    profile: Profile = Profile.PRODUCTION
    #: Addresses coturn listens on; empty = every interface (production only).
    listening_ips: tuple[str, ...] = ()
    #: Addresses relayed traffic leaves from; empty = the listening addresses.
    relay_ips: tuple[str, ...] = ()
    #: 1:1 NAT: ``PUBLIC`` or ``PUBLIC/PRIVATE`` (one line per relay address behind the NAT).
    external_ips: tuple[str, ...] = ()
    #: STUN/TURN over UDP and TCP.
    listening_port: int = 3478
    #: TURN over TLS. 443 gets through the strictest corporate firewalls (see README.md).
    tls_listening_port: int = 5349
    #: UDP port range of relayed media (open it in the firewall).
    min_port: int = 49152
    max_port: int = 65535
    #: TLS certificate chain and private key (PEM), required in production.
    cert: str | None = None
    pkey: str | None = None
    #: Exceptions to the denied peer ranges (``IP`` or ``IP-IP``), e.g. an SFU's private
    #: address. coturn lets an allowed address through even inside a denied range.
    allowed_peer_ips: tuple[str, ...] = ()
    #: Allocations per username (= per credential, since usernames embed the expiry).
    user_quota: int = 12
    #: Allocations on the whole server.
    total_quota: int = 1200
    #: Bytes per second per allocation and direction; 0 = unlimited. 2.5 MB/s = 20 Mbit/s,
    #: room for a subscriber receiving several HD streams through the SFU.
    max_bps: int = 2_500_000
    #: Seconds a nonce stays valid.
    stale_nonce: int = 600
    #: ``stdout``, ``syslog`` or an absolute path; default: syslog (production), stdout (test).
    log_file: str | None = None
    #: Absolute path of coturn's pid file; default: coturn's own.
    pidfile: str | None = None
    #: Absolute path of coturn's SQLite database; default: coturn's own. Unused with
    #: ``use-auth-secret`` but coturn opens it anyway, so tests point it to a temp dir.
    userdb: str | None = None


def find_template(name: str = TEMPLATE_NAME) -> Path:
    """Locate a file of turn-config/: in the installed wheel first, then in the source tree."""
    package_dir = Path(__file__).resolve().parent.parent  # signaling/
    candidates = (package_dir / "_turn_config" / name, package_dir.parent / "turn-config" / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"coturn template {name!r} not found (searched {searched})")


def load_template() -> str:
    """The text of turnserver.conf.template."""
    return find_template().read_text(encoding="utf-8")


def render(settings: CoturnSettings, template: str | None = None) -> str:
    """Render ``settings`` into a turnserver.conf; raise :class:`ValueError` if they are unsafe.

    ``template`` defaults to the shipped one (:func:`load_template`).
    """
    validate(settings)
    text = load_template() if template is None else template
    blocks = _blocks(settings)
    tpl = Template(text)
    names = set(tpl.get_identifiers())
    if names != set(blocks):
        # The template and this module are released together: a mismatch is a bug, not input.
        raise ValueError(f"template placeholders {sorted(names)} != rendered {sorted(blocks)}")
    return tpl.substitute(blocks)


def denied_ranges(profile: Profile) -> tuple[DeniedRange, ...]:
    """The peer ranges ``profile`` denies: all of them, or all but loopback for ``test``."""
    if profile is Profile.PRODUCTION:
        return DENIED_PEER_RANGES
    return tuple(r for r in DENIED_PEER_RANGES if not r.loopback)


def coturn_range(network: IPNetwork) -> str:
    """``network`` in coturn's ``denied-peer-ip`` syntax (``first-last``; every version reads it)."""
    if network.num_addresses == 1:
        return str(network.network_address)
    return f"{network.network_address}-{network.broadcast_address}"


# --- validation -----------------------------------------------------------------------------

_REALM = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$")


def validate(settings: CoturnSettings) -> None:
    """Raise :class:`ValueError` listing every problem of ``settings``.

    Every value ends up on a ``key=value`` line: anything that could smuggle a second line
    (a newline in a path, a secret) is rejected, as are settings that make the profile unsafe.
    """
    s = settings
    problems: list[str] = []
    if not _REALM.match(s.realm):
        problems.append(f"realm {s.realm!r} must be a DNS-like name")
    if not s.secrets:
        problems.append("at least one TURN secret is required")
    for index, secret in enumerate(s.secrets):
        try:
            check_secret(secret)
        except ValueError as exc:
            problems.append(f"secret #{index + 1}: {exc}")
            continue
        if s.profile is Profile.PRODUCTION and len(secret) < MIN_PRODUCTION_SECRET_LENGTH:
            problems.append(
                f"secret #{index + 1} is shorter than {MIN_PRODUCTION_SECRET_LENGTH} characters "
                "(use `openssl rand -hex 32`)"
            )
    if len(set(s.secrets)) != len(s.secrets):
        problems.append("the same secret is listed twice")

    for label, ips in (("listening", s.listening_ips), ("relay", s.relay_ips)):
        for ip in ips:
            address = _ip(ip, f"{label} IP", problems)
            if address is not None and s.profile is Profile.TEST and not address.is_loopback:
                problems.append(
                    f"{label} IP {ip} is not loopback: the test profile allows loopback peers "
                    "and must never be reachable from outside"
                )
    for mapping in s.external_ips:
        public, _, private = mapping.partition("/")
        _ip(public, "external IP", problems)
        if private:
            _ip(private, "external IP's private address", problems)
    if s.external_ips and s.profile is Profile.TEST:
        problems.append("the test profile has no external IP (it only listens on loopback)")
    for allowed in s.allowed_peer_ips:
        for part in allowed.split("-", 1):
            address = _ip(part, "allowed peer IP", problems)
            if address is not None and address.is_unspecified:
                # coturn reads an all-zero bound as "unbounded": this would allow every peer.
                problems.append(f"allowed peer IP {part} is unspecified (coturn: 'any')")

    ports = (
        ("listening port", s.listening_port),
        ("TLS listening port", s.tls_listening_port),
        ("min port", s.min_port),
        ("max port", s.max_port),
    )
    for label, port in ports:
        if not 0 < port < 65536:
            problems.append(f"{label} {port} is not in 1..65535")
    if s.min_port > s.max_port:
        problems.append(f"min port {s.min_port} > max port {s.max_port}")
    for label, port in ports[:2]:
        if s.min_port <= port <= s.max_port:
            problems.append(f"{label} {port} is inside the relay range {s.min_port}-{s.max_port}")

    for label, quota in (
        ("user quota", s.user_quota),
        ("total quota", s.total_quota),
        ("max bps", s.max_bps),
        ("stale nonce", s.stale_nonce),
    ):
        if quota < 0:
            problems.append(f"{label} must not be negative")

    if s.profile is Profile.PRODUCTION:
        if not s.cert or not s.pkey:
            problems.append("the production profile needs a TLS certificate and key (cert, pkey)")
    elif s.cert or s.pkey:
        problems.append("the test profile runs without TLS: drop cert/pkey")
    for label, path in (
        ("cert", s.cert),
        ("pkey", s.pkey),
        ("pidfile", s.pidfile),
        ("userdb", s.userdb),
    ):
        if path is not None:
            _path(path, label, problems)
    if s.log_file is not None and s.log_file not in ("stdout", "syslog"):
        _path(s.log_file, "log file", problems)

    if problems:
        raise ValueError("invalid coturn settings: " + "; ".join(problems))


def _ip(
    text: str, label: str, problems: list[str]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        problems.append(f"{label} {text!r} is not an IP address")
        return None


def _path(path: str, label: str, problems: list[str]) -> None:
    if not path.startswith("/") or any(ord(c) < 0x20 or c in "\"'#" for c in path):
        problems.append(
            f"{label} {path!r} must be an absolute path without quotes, '#' or control characters"
        )


# --- blocks ---------------------------------------------------------------------------------


def _blocks(s: CoturnSettings) -> dict[str, str]:
    """The variable parts of the template, each a ready-made block of lines."""
    test = s.profile is Profile.TEST
    listening = s.listening_ips or (("127.0.0.1",) if test else ())
    relays = s.relay_ips or (("127.0.0.1",) if test else ())
    return {
        "profile": s.profile.value,
        "listening_ips": _lines("listening-ip", listening)
        or "# listening-ip not set: coturn listens on every interface.",
        "listening_port": str(s.listening_port),
        "tls": _tls_block(s),
        "relay_ips": _lines("relay-ip", relays)
        or "# relay-ip not set: relayed traffic leaves from the listening addresses.",
        "external_ips": _lines("external-ip", s.external_ips)
        or "# external-ip not set: the relay addresses are reachable as they are (no 1:1 NAT).",
        "min_port": str(s.min_port),
        "max_port": str(s.max_port),
        "static_auth_secrets": _lines("static-auth-secret", s.secrets),
        "realm": s.realm,
        "stale_nonce": str(s.stale_nonce),
        "peer_policy": _peer_policy_block(s),
        "user_quota": str(s.user_quota),
        "total_quota": str(s.total_quota),
        "max_bps": str(s.max_bps),
        "process": _process_block(s),
    }


def _lines(key: str, values: tuple[str, ...]) -> str:
    return "\n".join(f"{key}={value}" for value in values)


def _tls_block(s: CoturnSettings) -> str:
    if s.profile is Profile.TEST:
        return "# Test profile: plain UDP/TCP only.\nno-tls\nno-dtls"
    return "\n".join(
        (
            f"tls-listening-port={s.tls_listening_port}",
            f"cert={s.cert}",
            f"pkey={s.pkey}",
            "# Browsers never speak TURN over DTLS: one listener fewer to expose.",
            "no-dtls",
        )
    )


def _peer_policy_block(s: CoturnSettings) -> str:
    lines: list[str] = []
    if s.profile is Profile.TEST:
        lines += [
            "# Test profile: relaying to loopback is what the tests do. Never in production.",
            "allow-loopback-peers",
        ]
    for denied in denied_ranges(s.profile):
        lines.append(f"# {denied.network}: {denied.reason}")
        lines.append(f"denied-peer-ip={coturn_range(denied.network)}")
    if s.allowed_peer_ips:
        lines.append(
            "# Explicit exceptions to the ranges above (coturn: allowed wins over denied)."
        )
        lines += [f"allowed-peer-ip={ip}" for ip in s.allowed_peer_ips]
    return "\n".join(lines)


def _process_block(s: CoturnSettings) -> str:
    log_file = s.log_file or ("stdout" if s.profile is Profile.TEST else "syslog")
    lines = ["syslog" if log_file == "syslog" else f"log-file={log_file}", "simple-log"]
    if s.pidfile is not None:
        lines.append(f"pidfile={s.pidfile}")
    if s.userdb is not None:
        lines.append(f"userdb={s.userdb}")
    return "\n".join(lines)
