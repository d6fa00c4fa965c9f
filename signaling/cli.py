"""The ``switchboard`` command line."""

from __future__ import annotations

import asyncio
import logging

import click

from signaling import __version__
from signaling.config import HeartbeatConfig, ServerConfig
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
    )
    asyncio.run(run_server(config))


cli.add_command(turn)


def main() -> None:
    cli()
