"""The ``switchboard`` command line."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import click

from signaling import __version__
from signaling.config import HeartbeatConfig, IceConfig, SecurityConfig, ServerConfig
from signaling.turn.cli import turn


@click.group()
@click.version_option(__version__, prog_name="switchboard")
def cli() -> None:
    """Switchboard: WebRTC signaling service and SFU coordinator."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option("--unix", "unix_path", default=None, help="Also listen on this unix socket.")
@click.option("--admin-token", default=None, envvar="SWITCHBOARD_ADMIN_TOKEN", help="Bearer token of /admin (unset: admin API off).")
@click.option("--node-id", default="node-1", show_default=True, help="This node's id in logs and metrics.")
@click.option("--heartbeat-interval", default=10.0, show_default=True, type=float, help="Seconds between pings.")
@click.option("--heartbeat-timeout", default=20.0, show_default=True, type=float, help="Seconds of silence before 4013.")
@click.option("--drain-timeout", default=10.0, show_default=True, type=float, help="Seconds a drain waits on SIGTERM.")
@click.option("--stun", "stun_urls", multiple=True, help="STUN URL handed to clients (repeatable).")
@click.option("--turn", "turn_urls", multiple=True, help="TURN URL (turn:/turns:) handed to clients with ephemeral credentials (repeatable).")
@click.option("--turn-secret", "turn_secrets", multiple=True, envvar="SWITCHBOARD_TURN_SECRET", help="TURN REST shared secret; the first signs (env: comma-separated).")
@click.option("--turn-ttl", default=4 * 3600, show_default=True, type=int, help="Lifetime of TURN credentials (s).")
@click.option("--ice-host", "ice_hosts", multiple=True, help="Address the SFU gathers ICE host candidates on (repeatable; default all).")
@click.option("--announce-ip", default=None, help="Address the SFU announces in its candidates (1:1 NAT).")
@click.option("--token-key", "token_keys", multiple=True, envvar="SWITCHBOARD_TOKEN_KEYS",
              help="Access-token key as KID:SECRET (repeatable; env: comma-separated). None: dev mode.")
@click.option("--allowed-origin", "allowed_origins", multiple=True, help="Browser origin allowed on /ws (repeatable; default any).")
@click.option("--no-sfu", is_flag=True, help="Signaling only: run no SFU in this process.")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
def serve(
    host: str,
    port: int,
    unix_path: str | None,
    admin_token: str | None,
    node_id: str,
    heartbeat_interval: float,
    heartbeat_timeout: float,
    drain_timeout: float,
    stun_urls: tuple[str, ...],
    turn_urls: tuple[str, ...],
    turn_secrets: tuple[str, ...],
    turn_ttl: int,
    ice_hosts: tuple[str, ...],
    announce_ip: str | None,
    token_keys: tuple[str, ...],
    allowed_origins: tuple[str, ...],
    no_sfu: bool,
    log_level: str,
) -> None:
    """Run a signaling node (embedded default: in-process SFU, state in memory)."""
    from signaling.server import serve as run_server

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    keys = _parse_token_keys(token_keys)
    if not keys:
        if not _is_loopback(host):
            raise click.UsageError(
                f"refusing to serve on {host} without access tokens: pass --token-key KID:SECRET "
                "(or bind 127.0.0.1 for development)"
            )
        click.secho(
            "DEV MODE: no access-token keys configured; anyone who can reach "
            f"{host}:{port} may join any room. Loopback only.",
            fg="yellow", bold=True, err=True,
        )
    config = ServerConfig(
        host=host,
        port=port,
        unix_path=unix_path,
        admin_token=admin_token,
        node_id=node_id,
        drain_timeout=drain_timeout,
        sfu=not no_sfu,
        security=SecurityConfig(token_keys=tuple(keys.items()), allowed_origins=allowed_origins),
        heartbeat=HeartbeatConfig(interval=heartbeat_interval, timeout=heartbeat_timeout),
        ice=IceConfig(
            stun_urls=stun_urls,
            turn_urls=turn_urls,
            turn_secrets=tuple(x.strip() for secret in turn_secrets for x in secret.split(",") if x.strip()),
            turn_ttl=turn_ttl,
            host_addresses=ice_hosts,
            announce_ip=announce_ip,
        ),
    )
    asyncio.run(run_server(config))


def _parse_token_keys(values: tuple[str, ...]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for value in (v.strip() for raw in values for v in raw.split(",")):
        if not value:
            continue
        kid, sep, secret = value.partition(":")
        if not sep or not kid or len(secret) < 32:
            raise click.BadParameter("expected KID:SECRET with a secret of at least 32 characters", param_hint="--token-key")
        keys[kid] = secret
    return keys


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


cli.add_command(turn)


def main() -> None:
    cli()
