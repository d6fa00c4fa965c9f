"""One configuration model: CLI flags > environment (``SWITCHBOARD_*``) > TOML file > defaults.

Every field of :class:`~signaling.core.config.ServerConfig` has a dotted key (``port``,
``heartbeat.interval``, ``security.message_rate``…), an environment variable
(``SWITCHBOARD_PORT``, ``SWITCHBOARD_HEARTBEAT_INTERVAL``…) and a place in the TOML file
(top-level or under ``[heartbeat]``…). A bad value fails at start with a message that names the
key and where the value came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from signaling.core import media_limits
from signaling.core.config import ServerConfig
from signaling.core.errors import PeerError
from signaling.core.redis_url import check_url as check_redis_url
from signaling.core.redis_url import redact as redact_redis_url

SECRET_KEYS = frozenset({"admin_token", "security.token_keys", "ice.turn_secrets", "webhooks.secret", "security.metrics_token"})


class ConfigError(PeerError, ValueError):
    """An invalid configuration value; the message names the key."""


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(ServerConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(ServerConfig) if dataclasses.is_dataclass(hints[f.name])}


def keys() -> dict[str, Any]:
    """Every dotted key with its type."""
    out: dict[str, Any] = {}
    sections = _sections()
    for f in dataclasses.fields(ServerConfig):
        hint = typing.get_type_hints(ServerConfig)[f.name]
        if f.name in sections:
            sub_hints = typing.get_type_hints(hint)
            for sub in dataclasses.fields(hint):
                out[f"{f.name}.{sub.name}"] = sub_hints[sub.name]
        else:
            out[f.name] = hint
    return out


ENV_PREFIX = "SWITCHBOARD_"

#: Variables read by commands that are not server configuration (client side of the admin API).
CLIENT_ENV = {"SWITCHBOARD_ADMIN_URL": "base URL of the node `switchboard admin` talks to"}
#: Variables under this prefix belong to the test suite (time scale…), never to a command.
TEST_ENV_PREFIX = "SWITCHBOARD_TEST_"


def env_name(key: str) -> str:
    """The environment variable of a dotted key: ``ice.turn_urls`` → ``SWITCHBOARD_ICE_TURN_URLS``."""
    return ENV_PREFIX + key.replace(".", "_").upper()


def env_names() -> frozenset[str]:
    """Every ``SWITCHBOARD_*`` variable some command reads (config keys and client variables)."""
    return frozenset(env_name(key) for key in keys()) | frozenset(CLIENT_ENV)


def unknown_env(env: Mapping[str, str]) -> list[str]:
    """One warning per ``SWITCHBOARD_*`` variable no command reads (a typo must not be silent)."""
    known = env_names()
    warnings = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in known or name.startswith(TEST_ENV_PREFIX):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"unknown environment variable {name} is ignored{hint}")
    return warnings


def _coerce(key: str, hint: Any, value: Any, source: str) -> Any:
    def fail(expected: str) -> ConfigError:
        return ConfigError(f"invalid config: {key}: expected {expected}, got {value!r} (from {source})")

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or value == "":
            return None
        return _coerce(key, args[0], value, source)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise fail("a boolean")
    if hint is int:
        try:
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise fail("an integer") from None
    if hint is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise fail("a number") from None
    if hint is str:
        if not isinstance(value, str | int | float):
            raise fail("a string")
        return str(value)
    if origin is tuple:
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise fail("a list")
        inner = typing.get_args(hint)[0]
        if typing.get_origin(inner) is tuple:  # (kid, secret) pairs, written kid:secret
            pairs = []
            for item in items:
                kid, sep, secret = str(item).partition(":") if isinstance(item, str) else ("", "", "")
                if isinstance(item, list | tuple) and len(item) == 2:
                    kid, sep, secret = str(item[0]), ":", str(item[1])
                if not sep or not kid or not secret:
                    raise fail("KID:SECRET entries")
                pairs.append((kid, secret))
            return tuple(pairs)
        return tuple(_coerce(key, inner, item, source) for item in items)
    raise fail(str(hint))  # pragma: no cover - a field type this loader does not know


def load(
    *,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    file: Path | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """Build the effective config. ``overrides`` are CLI values by dotted key (None = not given);
    ``defaults`` replace the built-in defaults of some keys for one command (``sfu --port``).
    """
    env = os.environ if env is None else env
    table = keys()
    values: dict[str, tuple[Any, str]] = {
        key: (value, "command default") for key, value in (defaults or {}).items()
    }
    if file is not None:
        try:
            document = tomllib.loads(file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"invalid config file {file}: {exc}") from None
        for name, value in document.items():
            if isinstance(value, dict) and name in _sections():
                for sub, sub_value in value.items():
                    values[f"{name}.{sub}"] = (sub_value, f"{file} [{name}]")
            else:
                values[name] = (value, str(file))
    for key in table:
        if (raw := env.get(env_name(key))) is not None:
            values[key] = (raw, env_name(key))
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = (value, "command line")
    unknown = sorted(set(values) - set(table))
    if unknown:
        raise ConfigError(f"invalid config: unknown key {unknown[0]} (from {values[unknown[0]][1]})")
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, (value, source) in values.items():
        coerced = _coerce(key, table[key], value, source)
        section, _, field = key.partition(".")
        if field:
            nested.setdefault(section, {})[field] = coerced
        else:
            top[key] = coerced
    base = ServerConfig()
    for section, fields in nested.items():
        top[section] = dataclasses.replace(getattr(base, section), **fields)
    config = dataclasses.replace(base, **top)
    validate(config)
    return config


def validate(config: ServerConfig) -> None:
    hb = config.heartbeat
    problems = []
    if not 0 < hb.interval <= 30:
        problems.append("heartbeat.interval: must be in (0, 30] s (proxies drop idle connections past ~30 s)")
    if hb.timeout <= hb.interval:
        problems.append("heartbeat.timeout: must exceed heartbeat.interval")
    if not 0 <= hb.jitter < 1:
        problems.append("heartbeat.jitter: must be in [0, 1)")
    if not hb.max_timeout > 0:
        problems.append("heartbeat.max_timeout: must be positive (below heartbeat.timeout: no adaptation)")
    if not 0 <= hb.rtt_factor <= 100:
        problems.append("heartbeat.rtt_factor: must be in [0, 100]")
    if not 0 < config.port < 65536 and config.port != 0:
        problems.append("port: must be 0-65535")
    if config.session.reconnecting_notice_after > config.session.grace_period:
        problems.append("session.reconnecting_notice_after: must not exceed session.grace_period")
    for key in ("replay_max_messages", "replay_max_bytes"):
        if getattr(config.session, key) <= 0:
            problems.append(f"session.{key}: must be positive")
    if not (config.session.leak_sample_interval >= 0 and math.isfinite(config.session.leak_sample_interval)):
        problems.append("session.leak_sample_interval: must be a finite number >= 0 (0: no leak alarm)")
    if config.limits.max_message_bytes > config.limits.hard_max_message_bytes:
        problems.append("limits.max_message_bytes: must not exceed limits.hard_max_message_bytes")
    if config.ice.port_range:
        low, sep, high = config.ice.port_range.partition("-")
        if not (sep and low.isdigit() and high.isdigit() and 1024 <= int(low) <= int(high) <= 65535):
            problems.append("ice.port_range: expected LOW-HIGH within 1024-65535")
    for cidr in config.ice.allow_peers:
        if not _is_network(cidr):
            problems.append(f"ice.allow_peers: {cidr!r} is not a CIDR range with host bits clear (e.g. 10.0.0.0/8)")
    for cidr in config.security.trusted_proxies:
        if not _is_network(cidr):
            problems.append(
                f"security.trusted_proxies: {cidr!r} is not an address or CIDR range with host bits clear (e.g. 10.0.0.0/8)"
            )
    if config.security.max_connections_per_proxy < 1:
        problems.append("security.max_connections_per_proxy: must be at least 1")
    problems += media_limits.problems(
        max_tracks_per_room=config.security.max_tracks_per_room,
        max_tracks_per_kind=config.security.max_tracks_per_kind,
        max_sdp_lines=config.security.max_sdp_lines,
        max_message_bytes=config.limits.max_message_bytes,
    )
    if config.ice.announce_ip and len(config.ice.host_addresses) != 1:
        problems.append("ice.announce_ip: needs exactly one ice.host_addresses entry (the address it stands for)")
    cluster = config.cluster
    if cluster.sfu_capacity < 1:
        problems.append("cluster.sfu_capacity: must be at least 1")
    for key in ("heartbeat_interval", "rpc_timeout", "failover_interval", "rpc_stream_ttl"):
        if getattr(cluster, key) <= 0:
            problems.append(f"cluster.{key}: must be positive")
    if cluster.node_ttl <= cluster.heartbeat_interval:
        problems.append("cluster.node_ttl: must exceed cluster.heartbeat_interval (a live node would flicker)")
    for key in ("rpc_stream_maxlen", "emit_queue_size", "lane_size"):
        if getattr(cluster, key) < 1:
            problems.append(f"cluster.{key}: must be at least 1")
    if config.redis_url and (problem := check_redis_url(config.redis_url)):
        problems.append(f"redis_url: malformed Redis URL: {problem} (--redis or {env_name('redis_url')})")
    if cluster.ledger_wait_replicas is not None and cluster.ledger_wait_replicas < 0:
        problems.append("cluster.ledger_wait_replicas: must be 0 or more (empty: automatic)")
    if not 0 < cluster.ledger_wait_timeout < 2:
        problems.append("cluster.ledger_wait_timeout: must be above 0 and below 2 s (the Redis call deadline)")
    if config.webhooks.urls and not config.webhooks.secret:
        problems.append("webhooks.secret: required when webhooks.urls is set")
    if config.ice.turn_urls and not config.ice.turn_secrets:
        problems.append(
            "ice.turn_secrets: required when ice.turn_urls is set (--turn-secret or "
            f"{env_name('ice.turn_secrets')}): clients get TURN credentials signed with it"
        )
    if bool(config.tls_cert) != bool(config.tls_key):
        given, missing = ("tls_cert", "tls_key") if config.tls_cert else ("tls_key", "tls_cert")
        problems.append(
            f"{missing}: required with {given} (--{missing.replace('_', '-')} or {env_name(missing)}); "
            "without both the node would serve plain HTTP"
        )
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))


def _value(config: ServerConfig, key: str) -> Any:
    section, _, field = key.partition(".")
    return getattr(getattr(config, section), field) if field else getattr(config, key)


def _is_network(cidr: str) -> bool:
    try:
        ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        return False
    return True


def effective(config: ServerConfig) -> dict[str, Any]:
    """The config as dotted keys with secrets masked, for ``switchboard config show``."""
    out: dict[str, Any] = {}
    for key in keys():
        value = _value(config, key)
        if key in SECRET_KEYS and value:
            if key == "security.token_keys":
                value = [f"{kid}:****" for kid, _ in value]
            elif isinstance(value, tuple):
                value = ["****"] * len(value)
            else:
                value = "****"
        elif key == "redis_url" and value:
            value = redact_redis_url(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string, but for DEL, which TOML wants escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")  # pragma: no cover - keys() has no such type


def to_toml(config: ServerConfig) -> str:
    """The effective config as a TOML file that ``--config`` loads back.

    Each line names its environment variable. Unset keys and secrets are written commented
    out: a masked secret loaded back would become a real (and wrong) one.
    """
    shown = effective(config)
    lines: list[str] = []
    section = ""
    # Top-level keys first: after a [table] header every key belongs to that table.
    for key in sorted(keys(), key=lambda k: "." in k):
        head, _, field = key.partition(".")
        if field and head != section:
            section = head
            lines += ["", f"[{section}]"]
        name = field or key
        value = _value(config, key)
        if value is None:
            lines.append(f"# {name} =    # unset; {env_name(key)}")
        elif key in SECRET_KEYS and value:
            lines.append(f"# {name} = {_toml_value(shown[key])}    # secret, not shown; {env_name(key)}")
        else:
            lines.append(f"{name} = {_toml_value(shown[key])}    # {env_name(key)}")
    return "\n".join(lines) + "\n"
