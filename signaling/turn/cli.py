"""``switchboard turn …``: TURN credentials, coturn configuration and a connectivity check.

Secrets come from ``SWITCHBOARD_ICE_TURN_SECRETS`` (comma-separated when rotating; the variable
``switchboard serve`` reads too) or from ``--secret``; there is never a default, because a
default secret is a published one. Prefer the environment variable: command-line arguments are
visible to every user in ``ps``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import ssl
import time
from typing import Any

import click

from signaling.core.settings import env_name
from signaling.turn.check import CheckSettings, format_report, run_checks
from signaling.turn.coturn import CoturnSettings, Profile, render
from signaling.turn.credentials import DEFAULT_TTL, MAX_TTL, check_secret, make_credentials
from signaling.turn.uris import IceUri, parse_ice_uri

#: The variables of ``switchboard serve`` (one naming scheme: ``SWITCHBOARD_<SECTION>_<KEY>``).
SECRET_ENV = env_name("ice.turn_secrets")
STUN_URLS_ENV = env_name("ice.stun_urls")
TURN_URLS_ENV = env_name("ice.turn_urls")

_SECRET_HELP = (
    f"TURN REST shared secret; repeat for several (the first signs). "
    f"Default: ${SECRET_ENV}, comma-separated. Never has a built-in default."
)


@click.group()
def turn() -> None:
    """TURN credentials and coturn configuration."""


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in os.environ.get(name, "").split(",") if item.strip())


def _secrets(flags: tuple[str, ...]) -> tuple[str, ...]:
    """The secrets from ``--secret`` or the environment, validated; a usage error if none."""
    secrets = flags or _env_list(SECRET_ENV)
    if not secrets:
        raise click.UsageError(
            f"no TURN secret: set {SECRET_ENV} (comma-separated for several) or pass --secret"
        )
    for index, secret in enumerate(secrets):
        try:
            check_secret(secret)
        except ValueError as exc:
            raise click.UsageError(f"TURN secret #{index + 1}: {exc}") from None
    return secrets


def _uris(values: tuple[str, ...], option: str, *, turn_only: bool | None) -> list[IceUri]:
    """Parse URLs; ``turn_only`` True/False requires turn:/stun: schemes, None accepts both."""
    uris: list[IceUri] = []
    for value in values:
        try:
            uri = parse_ice_uri(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None
        if turn_only is not None and uri.is_turn != turn_only:
            wanted = "turn: or turns:" if turn_only else "stun: or stuns:"
            raise click.BadParameter(f"{value!r} is not a {wanted} URL", param_hint=option)
        uris.append(uri)
    return uris


@turn.command()
@click.option(
    "--user", default="switchboard", show_default=True, help="Who the credentials are for."
)
@click.option(
    "--ttl",
    type=click.IntRange(1, MAX_TTL),
    default=DEFAULT_TTL,
    show_default=True,
    help=f"Lifetime in seconds (at most {MAX_TTL}).",
)
@click.option("--secret", "secret_flags", multiple=True, help=_SECRET_HELP)
@click.option(
    "--url", "urls", multiple=True, help="turn:/turns: URL to list in 'uris'; repeatable."
)
def credentials(user: str, ttl: int, secret_flags: tuple[str, ...], urls: tuple[str, ...]) -> None:
    """Print ephemeral TURN credentials as JSON: {username, credential, ttl, uris}."""
    secrets = _secrets(secret_flags)
    _uris(urls, "--url", turn_only=True)
    try:
        creds = make_credentials(secrets[0], user, ttl, time.time())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--user") from None
    payload = {
        "username": creds.username,
        "credential": creds.credential,
        "ttl": ttl,
        "uris": list(urls),
    }
    click.echo(json.dumps(payload, indent=2))


def _default(name: str) -> Any:
    """A :class:`CoturnSettings` default, so the CLI and the dataclass never disagree."""
    field = {f.name: f for f in dataclasses.fields(CoturnSettings)}[name]
    return field.default


@turn.command()
@click.option(
    "--profile",
    type=click.Choice([p.value for p in Profile]),
    default=Profile.PRODUCTION.value,
    show_default=True,
    help="production: private peers denied, TLS required. test: loopback only, no TLS.",
)
@click.option("--realm", required=True, help="TURN realm, usually the TURN server's DNS name.")
@click.option("--secret", "secret_flags", multiple=True, help=_SECRET_HELP)
@click.option(
    "--listen-ip",
    "listening_ips",
    multiple=True,
    help="Address to listen on; repeatable. Default: all (test: 127.0.0.1).",
)
@click.option(
    "--relay-ip",
    "relay_ips",
    multiple=True,
    help="Address relayed traffic leaves from; repeatable.",
)
@click.option(
    "--external-ip",
    "external_ips",
    multiple=True,
    help="1:1 NAT: PUBLIC or PUBLIC/PRIVATE; repeatable.",
)
@click.option(
    "--port", "listening_port", type=int, default=_default("listening_port"), show_default=True
)
@click.option(
    "--tls-port",
    "tls_listening_port",
    type=int,
    default=_default("tls_listening_port"),
    show_default=True,
)
@click.option(
    "--min-port",
    type=int,
    default=_default("min_port"),
    show_default=True,
    help="Relay port range start.",
)
@click.option(
    "--max-port",
    type=int,
    default=_default("max_port"),
    show_default=True,
    help="Relay port range end.",
)
@click.option("--cert", default=None, help="TLS certificate chain (PEM, absolute path).")
@click.option("--pkey", default=None, help="TLS private key (PEM, absolute path).")
@click.option(
    "--allow-peer-ip",
    "allowed_peer_ips",
    multiple=True,
    help="Exception to the denied peer ranges (IP or IP-IP), e.g. the SFU's private address.",
)
@click.option("--user-quota", type=int, default=_default("user_quota"), show_default=True)
@click.option("--total-quota", type=int, default=_default("total_quota"), show_default=True)
@click.option(
    "--max-bps",
    type=int,
    default=_default("max_bps"),
    show_default=True,
    help="Bytes/s per allocation and direction; 0 = unlimited.",
)
@click.option("--stale-nonce", type=int, default=_default("stale_nonce"), show_default=True)
@click.option("--log-file", default=None, help="stdout, syslog or an absolute path.")
@click.option("--pidfile", default=None)
@click.option("--userdb", default=None)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write here (mode 0600) instead of stdout.",
)
def config(secret_flags: tuple[str, ...], output: str | None, profile: str, **options: Any) -> None:
    """Render coturn's turnserver.conf for Switchboard."""
    settings = CoturnSettings(secrets=_secrets(secret_flags), profile=Profile(profile), **options)
    try:
        text = render(settings)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if output is None:
        click.echo(text, nl=False)
        return
    # The file holds the shared secrets: create it private rather than tighten it afterwards.
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)
    click.echo(f"wrote {output}", err=True)


@turn.command()
@click.option(
    "--stun",
    "stun_urls",
    multiple=True,
    help=f"stun:/stuns: URL; repeatable. Default: ${STUN_URLS_ENV}.",
)
@click.option(
    "--turn",
    "turn_urls",
    multiple=True,
    help=f"turn:/turns: URL; repeatable. Default: ${TURN_URLS_ENV}.",
)
@click.option(
    "--secret",
    "secret_flags",
    multiple=True,
    help="Mint credentials with this secret (the first). Default: $" + SECRET_ENV + ".",
)
@click.option(
    "--username", default=None, help="Use these TURN credentials instead of minting them."
)
@click.option("--credential", default=None, help="Password that goes with --username.")
@click.option(
    "--user", default="switchboard-check", show_default=True, help="User in minted credentials."
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 60),
    default=5.0,
    show_default=True,
    help="Seconds per check.",
)
@click.option(
    "--cafile",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="CA bundle for turns:/stuns: (default: the system's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def check(
    stun_urls: tuple[str, ...],
    turn_urls: tuple[str, ...],
    secret_flags: tuple[str, ...],
    username: str | None,
    credential: str | None,
    user: str,
    timeout: float,
    cafile: str | None,
    as_json: bool,
) -> None:
    """Try a STUN binding and a TURN allocation on each server; exit 1 if any fails."""
    stun_uris = _uris(stun_urls or _env_list(STUN_URLS_ENV), "--stun", turn_only=False)
    turn_uris = _uris(turn_urls or _env_list(TURN_URLS_ENV), "--turn", turn_only=True)
    if not stun_uris and not turn_uris:
        raise click.UsageError(
            f"nothing to check: pass --stun/--turn or set {STUN_URLS_ENV}/{TURN_URLS_ENV}"
        )
    creds: tuple[str, str] | None = None
    if turn_uris:
        if (username is None) != (credential is None):
            raise click.UsageError("--username and --credential go together")
        if username is not None and credential is not None:
            if secret_flags:
                raise click.UsageError("pass either --secret or --username/--credential, not both")
            creds = (username, credential)
        else:
            secret = _secrets(secret_flags)[0]
            try:
                minted = make_credentials(secret, user, DEFAULT_TTL, time.time())
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--user") from None
            creds = (minted.username, minted.credential)
    settings = CheckSettings(
        timeout=timeout, ssl_context=ssl.create_default_context(cafile=cafile) if cafile else None
    )
    results = asyncio.run(run_checks(stun_uris, turn_uris, creds, settings))
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    else:
        click.echo(format_report(results))
    click.get_current_context().exit(0 if all(r.ok for r in results) else 1)
