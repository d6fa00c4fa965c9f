"""The ``switchboard`` command line."""

from __future__ import annotations

import asyncio
import logging

import click

from signaling import __version__
from signaling.config import HeartbeatConfig, IceConfig, ServerConfig
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
    log_level: str,
) -> None:
    """Run a signaling node (embedded default: in-process SFU, state in memory)."""
    from signaling.server import serve as run_server

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = ServerConfig(
        host=host,
        port=port,
        unix_path=unix_path,
        admin_token=admin_token,
        node_id=node_id,
        drain_timeout=drain_timeout,
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


cli.add_command(turn)


def main() -> None:
    cli()
