"""The ``switchboard`` command line.

Configuration: flags > ``SWITCHBOARD_*`` environment variables > ``--config`` TOML file >
defaults (see :mod:`signaling.core.settings`). Any key can be set with ``--set key=value``.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from signaling import __version__
from signaling.core import settings
from signaling.core.config import ServerConfig
from signaling.core.errors import PeerError
from signaling.core.loopback import is_loopback
from signaling.tools.admin_cli import admin
from signaling.tools.loadtest import loadtest
from signaling.turn.cli import turn

#: Where an SFU node listens (health and metrics) unless told otherwise: not serve's 8080, so the
#: two run side by side on one machine without a --port.
SFU_DEFAULT_PORT = 9100
#: Seconds the start-up check gives Redis to answer a PING.
REDIS_CHECK_TIMEOUT = 3.0


class OperatorError(PeerError, click.ClickException):
    """A configuration mistake: one line on stderr naming the flag/key, exit 2, no traceback."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


@click.group()
@click.version_option(__version__, prog_name="switchboard")
def cli() -> None:
    """Switchboard: WebRTC signaling service and SFU coordinator."""
    # Once per command: a mistyped variable is otherwise silently ignored.
    for warning in settings.unknown_env(os.environ):
        click.echo(f"warning: {warning}", err=True)


#: Every configuration flag by parameter name; commands pick the ones that apply to them.
_OPTIONS: dict[str, Any] = {
    "config_file": click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="TOML config file."),
    "sets": click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set any config key (repeatable), e.g. heartbeat.interval=5."),
    "host": click.option("--host", default=None, help="Address to listen on [127.0.0.1]."),
    "port": click.option("--port", default=None, type=int, help="Port to listen on [8080]."),
    "unix_path": click.option("--unix", "unix_path", default=None, help="Also listen on this unix socket."),
    "admin_token": click.option("--admin-token", default=None, help="Bearer token of /admin (unset: admin API off). Env: SWITCHBOARD_ADMIN_TOKEN."),
    "admin_host": click.option("--admin-host", default=None, help="Serve the admin API and /metrics on their own listener at this address [127.0.0.1 with --admin-port]."),
    "admin_port": click.option("--admin-port", default=None, type=int, help="Port of the admin listener (unset: admin API and /metrics on the main listener)."),
    "metrics_token": click.option("--metrics-token", default=None, help="Bearer token required on /metrics. Env: SWITCHBOARD_SECURITY_METRICS_TOKEN."),
    "node_id": click.option("--node-id", default=None, help="This node's id in logs, metrics and the cluster."),
    "redis_url": click.option("--redis", "redis_url", default=None, help="Redis URL, redis://HOST[:PORT][/DB] or redis+sentinel://S1[:PORT],S2.../SERVICE[/DB]: join a cluster (unset: one process, state in memory)."),
    "heartbeat_interval": click.option("--heartbeat-interval", default=None, type=float, help="Seconds between pings [10]."),
    "heartbeat_timeout": click.option("--heartbeat-timeout", default=None, type=float, help="Seconds of silence before 4013 [20]."),
    "drain_timeout": click.option("--drain-timeout", default=None, type=float, help="Seconds a drain waits on SIGTERM [10]."),
    "stun_urls": click.option("--stun", "stun_urls", multiple=True, help="STUN URL handed to clients (repeatable)."),
    "turn_urls": click.option("--turn", "turn_urls", multiple=True, help="TURN URL (turn:/turns:) handed to clients with ephemeral credentials (repeatable)."),
    "turn_secrets": click.option("--turn-secret", "turn_secrets", multiple=True, help="TURN REST shared secret; the first signs. Env: SWITCHBOARD_ICE_TURN_SECRETS (comma-separated)."),
    "turn_ttl": click.option("--turn-ttl", default=None, type=click.IntRange(1, 86400), help="Lifetime of TURN credentials (s) [14400]."),
    "ice_hosts": click.option("--ice-host", "ice_hosts", multiple=True, help="Address the SFU gathers ICE host candidates on (repeatable; default all, or loopback when serving loopback)."),
    "announce_ip": click.option("--announce-ip", default=None, help="Address the SFU announces in its candidates (1:1 NAT); needs one --ice-host."),
    "ice_port_range": click.option("--ice-port-range", default=None, metavar="LOW-HIGH", help="UDP ports for the SFU's ICE sockets (firewalls)."),
    "ice_allow_peers": click.option("--ice-allow-peer", "ice_allow_peers", multiple=True, metavar="CIDR", help="Remote ICE candidate range the SFU may contact although refused by default (private, loopback, link-local, CGNAT…), e.g. your LAN (repeatable). Dev mode adds loopback."),
    "token_keys": click.option("--token-key", "token_keys", multiple=True, help="Access-token key as KID:SECRET (repeatable). None: dev mode. Env: SWITCHBOARD_SECURITY_TOKEN_KEYS."),
    "trusted_proxies": click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="CIDR", help="Reverse proxy whose X-Forwarded-For is believed (repeatable; default none). Env: SWITCHBOARD_SECURITY_TRUSTED_PROXIES."),
    "allowed_origins": click.option("--allowed-origin", "allowed_origins", multiple=True, help="Browser origin allowed on /ws (repeatable; default any)."),
    "no_sfu": click.option("--no-sfu", is_flag=True, default=None, help="Signaling only: run no SFU in this process (with --redis: no media at all)."),
    "webhook_urls": click.option("--webhook-url", "webhook_urls", multiple=True, help="Webhook receiver URL (repeatable)."),
    "webhook_secret": click.option("--webhook-secret", default=None, help="Webhook signing secret. Env: SWITCHBOARD_WEBHOOKS_SECRET."),
    "tls_cert": click.option("--tls-cert", default=None, help="TLS certificate (PEM) for the listener."),
    "tls_key": click.option("--tls-key", default=None, help="TLS private key (PEM) for the listener."),
}

#: The flags of an SFU node: where it listens (health and metrics only), the cluster, its ICE.
_SFU_OPTIONS = (
    "config_file", "sets", "host", "node_id", "drain_timeout", "admin_token",
    "ice_hosts", "announce_ip", "ice_port_range", "ice_allow_peers",
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


def _load(params: dict[str, Any], *, defaults: dict[str, Any] | None = None) -> ServerConfig:
    """Map CLI parameters to dotted keys and load the effective config."""
    flag_keys = {
        "host": "host", "port": "port", "unix_path": "unix_path", "admin_token": "admin_token",
        "admin_host": "admin_host", "admin_port": "admin_port", "metrics_token": "security.metrics_token",
        "node_id": "node_id", "redis_url": "redis_url", "heartbeat_interval": "heartbeat.interval", "heartbeat_timeout": "heartbeat.timeout",
        "drain_timeout": "drain_timeout", "stun_urls": "ice.stun_urls", "turn_urls": "ice.turn_urls",
        "turn_secrets": "ice.turn_secrets", "turn_ttl": "ice.turn_ttl", "ice_hosts": "ice.host_addresses",
        "announce_ip": "ice.announce_ip", "ice_port_range": "ice.port_range", "ice_allow_peers": "ice.allow_peers", "token_keys": "security.token_keys",
        "allowed_origins": "security.allowed_origins", "trusted_proxies": "security.trusted_proxies", "tls_cert": "tls_cert", "tls_key": "tls_key",
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
    try:
        return settings.load(overrides=overrides, env=os.environ, file=params.get("config_file"), defaults=defaults)
    except settings.ConfigError as exc:
        raise OperatorError(str(exc)) from None


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


#: Libraries whose INFO lines are per packet exchange (aioice logs every connectivity check, half
#: of all lines of a two-person call): shown only with --log-level debug.
_CHATTY_LOGGERS = ("aioice", "aiortc")


def setup_logging(log_level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=log_level.upper(), handlers=[handler])
    level = logging.DEBUG if log_level == "debug" else max(logging.WARNING, logging.getLevelName(log_level.upper()))
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(level)


# -- start-up checks: every operator mistake is one line naming the flag, exit 2 ------------------


def _where(key: str) -> str:
    """How to set a key, for error messages."""
    return f"config key {key}, env {settings.env_name(key)}"


def check_listen(host: str, port: int) -> None:
    """Fail now if ``host:port`` cannot be listened on (in use, not ours, privileged)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OperatorError(f"--host {host}: cannot resolve it ({exc.strerror}; {_where('host')})") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            # What asyncio's create_server does, so the probe fails exactly when the server would.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                ip = str(address[0])
                shown = f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"
                if exc.errno == errno.EADDRINUSE:
                    why = f"{shown} is already in use (another switchboard?); pick a free --port ({_where('port')})"
                    raise OperatorError(f"--port {port}: {why}") from None
                if exc.errno == errno.EACCES:
                    why = f"permission denied on {shown}: ports below 1024 need root or CAP_NET_BIND_SERVICE ({_where('port')})"
                    raise OperatorError(f"--port {port}: {why}") from None
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise OperatorError(f"--host {host}: {ip} is not an address of this machine ({_where('host')})") from None
                raise OperatorError(f"--host/--port: cannot listen on {shown}: {exc.strerror}") from None


def check_tls(cert: str | None, key: str | None) -> None:
    """Fail now if the TLS certificate or key is missing, unreadable, not PEM or mismatched."""
    if not cert or not key:
        return  # both or neither: settings.validate refuses one without the other
    for flag, name, path in (("--tls-cert", "tls_cert", cert), ("--tls-key", "tls_key", key)):
        try:
            Path(path).read_bytes()
        except OSError as exc:
            raise OperatorError(f"{flag} {path}: cannot read it ({exc.strerror}; {_where(name)})") from None
    asked: list[bool] = []

    def password() -> bytes:  # never a prompt on the terminal: an encrypted key is a mistake here
        asked.append(True)
        return b""

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key, password=password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise OperatorError(f"--tls-key {key} does not belong to --tls-cert {cert} ({_where('tls_key')})") from None
        if asked:
            raise OperatorError(f"--tls-key {key}: the key is encrypted; give an unencrypted PEM key ({_where('tls_key')})") from None
        try:
            ssl.create_default_context().load_verify_locations(cafile=cert)
        except ssl.SSLError:
            raise OperatorError(f"--tls-cert {cert}: not a PEM certificate ({_where('tls_cert')})") from None
        raise OperatorError(f"--tls-key {key}: not a PEM private key ({_where('tls_key')})") from None


def _redact(url: str) -> str:
    """The URL without its passwords, for messages (both URL forms)."""
    from signaling.core.redis_url import redact

    return redact(url)


def check_redis(url: str) -> None:
    """Fail now if the Redis URL is malformed or Redis does not answer a PING."""
    from signaling.cluster.redis_backend import REDIS_ERRORS, make_client

    where = f"--redis {_redact(url)}"
    try:
        client = make_client(url, op_timeout=REDIS_CHECK_TIMEOUT, max_connections=1)
    except (ValueError, TypeError) as exc:
        raise OperatorError(f"{where}: malformed Redis URL: {exc} (expected redis://HOST:PORT/DB or redis+sentinel://S1:PORT,S2:PORT/SERVICE/DB; {_where('redis_url')})") from None

    async def ping() -> None:
        try:
            async with asyncio.timeout(REDIS_CHECK_TIMEOUT):
                await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except REDIS_ERRORS as exc:
        why = str(exc) or type(exc).__name__
        raise OperatorError(f"{where}: Redis does not answer: {why} (is it running? {_where('redis_url')})") from None


def check_ice(config: ServerConfig) -> None:
    """Fail now on STUN/TURN URLs that the first welcome would choke on."""
    from signaling.turn.credentials import check_ice_config

    try:
        check_ice_config(config.ice)
    except ValueError as exc:
        raise OperatorError(f"{exc} (--stun/--turn/--turn-secret; config keys ice.*)") from None


@cli.command()
@_config_options
@_log_options
def serve(log_level: str, log_format: str, **params: Any) -> None:
    """Run a signaling node (embedded default: in-process SFU, state in memory)."""
    from signaling.server.app import serve as run_server

    setup_logging(log_level, log_format)
    config = _load(params)
    if not config.security.token_keys and not is_loopback(config.host):
        raise OperatorError(
            f"refusing to serve on {config.host} without access tokens: pass --token-key KID:SECRET "
            f"({_where('security.token_keys')}), or bind 127.0.0.1 for development"
        )
    check_tls(config.tls_cert, config.tls_key)
    check_ice(config)
    check_listen(config.host, config.port)
    if config.redis_url:
        check_redis(config.redis_url)
    if config.admin_host is not None and config.admin_port is None:
        raise OperatorError(f"--admin-host needs --admin-port ({_where('admin_port')})")
    if not config.security.token_keys:
        click.secho(
            "DEV MODE: no access-token keys configured; anyone who can reach "
            f"{config.host}:{config.port} may join any room. Loopback only.",
            fg="yellow", bold=True, err=True,
        )
    asyncio.run(run_server(config))


@cli.command()
@_options(_SFU_OPTIONS)
@click.option("--redis", "redis_url", default=None, help="Redis URL of the cluster (required; env SWITCHBOARD_REDIS_URL).")
@click.option("--port", default=None, type=int, help=f"Port for /healthz, /readyz and /metrics [{SFU_DEFAULT_PORT}: not serve's].")
@click.option("--capacity", default=None, type=click.IntRange(min=1), help="Rooms this node takes [100] (cluster.sfu_capacity).")
@_log_options
def sfu(log_level: str, log_format: str, **params: Any) -> None:
    """Run an SFU node of a cluster (needs --redis); one per core is the expected deployment.

    It registers in the cluster's node registry, takes the rooms placed on it, serves /healthz,
    /readyz and /metrics on --host/--port, and drains on SIGTERM or POST /admin/drain (with
    --admin-token): no new rooms, its rooms are handed over to other SFU nodes, then it exits.
    """
    from signaling.cluster.sfu_node import serve_sfu

    setup_logging(log_level, log_format)
    config = _load(params, defaults={"port": SFU_DEFAULT_PORT})
    if not config.redis_url:
        raise OperatorError(f"an SFU node needs --redis URL ({_where('redis_url')})")
    check_listen(config.host, config.port)
    check_redis(config.redis_url)
    asyncio.run(serve_sfu(config))


@cli.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("show")
@_config_options
@click.option("--json", "as_json", is_flag=True, help="JSON instead of TOML.")
def config_show(as_json: bool, **params: Any) -> None:
    """Print the effective configuration (flags > env > file > defaults) as TOML.

    The output loads back with --config; secrets and unset keys are commented out.
    """
    config = _load(params)
    if as_json:
        click.echo(json.dumps(settings.effective(config), indent=2))
        return
    click.echo(settings.to_toml(config), nl=False)


cli.add_command(turn)
cli.add_command(admin)
cli.add_command(loadtest)


def main() -> None:
    cli()
