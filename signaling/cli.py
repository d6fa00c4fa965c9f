"""The ``switchboard`` command line.

Configuration: flags > ``SWITCHBOARD_*`` environment variables > ``--config`` TOML file >
defaults (see :mod:`signaling.settings`). Any key can be set with ``--set key=value``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from signaling import __version__, settings
from signaling.admin_cli import admin
from signaling.config import ServerConfig
from signaling.loadtest import loadtest
from signaling.turn.cli import turn


@click.group()
@click.version_option(__version__, prog_name="switchboard")
def cli() -> None:
    """Switchboard: WebRTC signaling service and SFU coordinator."""


#: Every configuration flag by parameter name; commands pick the ones that apply to them.
_OPTIONS: dict[str, Any] = {
    "config_file": click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="TOML config file."),
    "sets": click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set any config key (repeatable), e.g. heartbeat.interval=5."),
    "host": click.option("--host", default=None, help="Address to listen on [127.0.0.1]."),
    "port": click.option("--port", default=None, type=int, help="Port to listen on [8080]."),
    "unix_path": click.option("--unix", "unix_path", default=None, help="Also listen on this unix socket."),
    "admin_token": click.option("--admin-token", default=None, help="Bearer token of /admin (unset: admin API off). Env: SWITCHBOARD_ADMIN_TOKEN."),
    "node_id": click.option("--node-id", default=None, help="This node's id in logs, metrics and the cluster."),
    "redis_url": click.option("--redis", "redis_url", default=None, help="Redis URL, redis://HOST[:PORT][/DB] or redis+sentinel://S1[:PORT],S2.../SERVICE[/DB]: join a cluster (default: one process, memory)."),
    "heartbeat_interval": click.option("--heartbeat-interval", default=None, type=float, help="Seconds between pings [10]."),
    "heartbeat_timeout": click.option("--heartbeat-timeout", default=None, type=float, help="Seconds of silence before 4013 [20]."),
    "drain_timeout": click.option("--drain-timeout", default=None, type=float, help="Seconds a drain waits on SIGTERM [10]."),
    "stun_urls": click.option("--stun", "stun_urls", multiple=True, help="STUN URL handed to clients (repeatable)."),
    "turn_urls": click.option("--turn", "turn_urls", multiple=True, help="TURN URL (turn:/turns:) handed to clients with ephemeral credentials (repeatable)."),
    "turn_secrets": click.option("--turn-secret", "turn_secrets", multiple=True, help="TURN REST shared secret; the first signs. Env: SWITCHBOARD_ICE_TURN_SECRETS or SWITCHBOARD_TURN_SECRET."),
    "turn_ttl": click.option("--turn-ttl", default=None, type=click.IntRange(1, 86400), help="Lifetime of TURN credentials (s) [14400]."),
    "ice_hosts": click.option("--ice-host", "ice_hosts", multiple=True, help="Address the SFU gathers ICE host candidates on (repeatable; default all, or loopback when serving loopback)."),
    "announce_ip": click.option("--announce-ip", default=None, help="Address the SFU announces in its candidates (1:1 NAT); needs one --ice-host."),
    "ice_port_range": click.option("--ice-port-range", default=None, metavar="LOW-HIGH", help="UDP ports for the SFU's ICE sockets (firewalls)."),
    "token_keys": click.option("--token-key", "token_keys", multiple=True, help="Access-token key as KID:SECRET (repeatable). None: dev mode. Env: SWITCHBOARD_SECURITY_TOKEN_KEYS."),
    "allowed_origins": click.option("--allowed-origin", "allowed_origins", multiple=True, help="Browser origin allowed on /ws (repeatable; default any)."),
    "no_sfu": click.option("--no-sfu", is_flag=True, default=None, help="Signaling only: run no SFU in this process (with --redis: no media at all)."),
    "webhook_urls": click.option("--webhook-url", "webhook_urls", multiple=True, help="Webhook receiver URL (repeatable)."),
    "webhook_secret": click.option("--webhook-secret", default=None, help="Webhook signing secret. Env: SWITCHBOARD_WEBHOOKS_SECRET."),
    "tls_cert": click.option("--tls-cert", default=None, help="TLS certificate (PEM) for the listener."),
    "tls_key": click.option("--tls-key", default=None, help="TLS private key (PEM) for the listener."),
}

#: The flags of an SFU node: where it listens (health and metrics only), the cluster, its ICE.
_SFU_OPTIONS = (
    "config_file", "sets", "host", "port", "node_id", "redis_url", "drain_timeout",
    "ice_hosts", "announce_ip", "ice_port_range",
)


def _options(names: tuple[str, ...] | list[str]) -> Callable[[Any], Any]:
    """A decorator adding the named flags of :data:`_OPTIONS`, in that order."""

    def decorate(fn: Any) -> Any:
        for name in reversed(names):
            fn = _OPTIONS[name](fn)
        return fn

    return decorate


def _config_options(fn: Any) -> Any:
    """Every configuration flag (``serve``, ``config show``)."""
    return _options(list(_OPTIONS))(fn)


def _load(params: dict[str, Any]) -> ServerConfig:
    """Map CLI parameters to dotted keys and load the effective config."""
    flag_keys = {
        "host": "host", "port": "port", "unix_path": "unix_path", "admin_token": "admin_token",
        "node_id": "node_id", "redis_url": "redis_url", "heartbeat_interval": "heartbeat.interval", "heartbeat_timeout": "heartbeat.timeout",
        "drain_timeout": "drain_timeout", "stun_urls": "ice.stun_urls", "turn_urls": "ice.turn_urls",
        "turn_secrets": "ice.turn_secrets", "turn_ttl": "ice.turn_ttl", "ice_hosts": "ice.host_addresses",
        "announce_ip": "ice.announce_ip", "ice_port_range": "ice.port_range", "token_keys": "security.token_keys",
        "allowed_origins": "security.allowed_origins", "tls_cert": "tls_cert", "tls_key": "tls_key",
        "webhook_urls": "webhooks.urls", "webhook_secret": "webhooks.secret",
        "capacity": "cluster.sfu_capacity",
    }
    overrides: dict[str, Any] = {}
    for item in params.pop("sets", ()):
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        overrides[key.strip()] = value
    for name, key in flag_keys.items():
        value = params.get(name)
        if value not in (None, ()):
            overrides[key] = list(value) if isinstance(value, tuple) else value
    if params.get("no_sfu"):
        overrides["sfu"] = False
    env = dict(os.environ)
    # The TURN tools' variable also configures the server (one secret list to keep in step).
    if "SWITCHBOARD_TURN_SECRET" in env and "SWITCHBOARD_ICE_TURN_SECRETS" not in env:
        env["SWITCHBOARD_ICE_TURN_SECRETS"] = env["SWITCHBOARD_TURN_SECRET"]
    try:
        return settings.load(overrides=overrides, env=env, file=params.get("config_file"))
    except settings.ConfigError as exc:
        raise click.UsageError(str(exc)) from None


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra`` fields (session, room, node) are kept."""

    _skip = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record), "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in self._skip})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _log_options(fn: Any) -> Any:
    fn = click.option("--log-format", default="text", show_default=True, type=click.Choice(["text", "json"]))(fn)
    return click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))(fn)


def _setup_logging(log_level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=log_level.upper(), handlers=[handler])


@cli.command()
@_config_options
@_log_options
def serve(log_level: str, log_format: str, **params: Any) -> None:
    """Run a signaling node (embedded default: in-process SFU, state in memory)."""
    from signaling.server import serve as run_server

    _setup_logging(log_level, log_format)
    config = _load(params)
    if not config.security.token_keys:
        if not _is_loopback(config.host):
            raise click.UsageError(
                f"refusing to serve on {config.host} without access tokens: pass --token-key KID:SECRET "
                "(or bind 127.0.0.1 for development)"
            )
        click.secho(
            "DEV MODE: no access-token keys configured; anyone who can reach "
            f"{config.host}:{config.port} may join any room. Loopback only.",
            fg="yellow", bold=True, err=True,
        )
    asyncio.run(run_server(config))


@cli.command()
@_options(_SFU_OPTIONS)
@click.option("--capacity", default=None, type=click.IntRange(min=1), help="Rooms this node takes [100] (cluster.sfu_capacity).")
@_log_options
def sfu(log_level: str, log_format: str, **params: Any) -> None:
    """Run an SFU node of a cluster (needs --redis); one per core is the expected deployment.

    It registers in the cluster's node registry, takes the rooms placed on it, serves /healthz,
    /readyz and /metrics on --host/--port, and drains on SIGTERM (no new rooms; its rooms move
    to other SFU nodes when it stops).
    """
    from signaling.sfu_node import serve_sfu

    _setup_logging(log_level, log_format)
    config = _load(params)
    if not config.redis_url:
        raise click.UsageError("an SFU node needs --redis URL (or SWITCHBOARD_REDIS_URL)")
    asyncio.run(serve_sfu(config))


@cli.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("show")
@_config_options
@click.option("--json", "as_json", is_flag=True, help="JSON instead of key = value lines.")
def config_show(as_json: bool, **params: Any) -> None:
    """Print the effective configuration (flags > env > file > defaults), secrets masked."""
    effective = settings.effective(_load(params))
    if as_json:
        click.echo(json.dumps(effective, indent=2))
        return
    for key, value in effective.items():
        click.echo(f"{key} = {json.dumps(value)}    # {settings.env_name(key)}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


cli.add_command(turn)
cli.add_command(admin)
cli.add_command(loadtest)


def main() -> None:
    cli()
