"""One configuration model: CLI flags > environment (``SWITCHBOARD_*``) > TOML file > defaults.

Every field of :class:`~signaling.config.ServerConfig` has a dotted key (``port``,
``heartbeat.interval``, ``security.message_rate``…), an environment variable
(``SWITCHBOARD_PORT``, ``SWITCHBOARD_HEARTBEAT_INTERVAL``…) and a place in the TOML file
(top-level or under ``[heartbeat]``…). A bad value fails at start with a message that names the
key and where the value came from.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from signaling.backend.redis_url import check_url as check_redis_url
from signaling.backend.redis_url import redact as redact_redis_url
from signaling.config import ServerConfig

SECRET_KEYS = frozenset({"admin_token", "security.token_keys", "ice.turn_secrets", "webhooks.secret"})


class ConfigError(ValueError):
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


def env_name(key: str) -> str:
    return "SWITCHBOARD_" + key.replace(".", "_").upper()


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
) -> ServerConfig:
    """Build the effective config. ``overrides`` are CLI values by dotted key (None = not given)."""
    env = os.environ if env is None else env
    table = keys()
    values: dict[str, tuple[Any, str]] = {}
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
    if not 0 < config.port < 65536 and config.port != 0:
        problems.append("port: must be 0-65535")
    if config.session.reconnecting_notice_after > config.session.grace_period:
        problems.append("session.reconnecting_notice_after: must not exceed session.grace_period")
    for key in ("replay_max_messages", "replay_max_bytes"):
        if getattr(config.session, key) <= 0:
            problems.append(f"session.{key}: must be positive")
    if config.limits.max_message_bytes > config.limits.hard_max_message_bytes:
        problems.append("limits.max_message_bytes: must not exceed limits.hard_max_message_bytes")
    if config.ice.port_range:
        low, sep, high = config.ice.port_range.partition("-")
        if not (sep and low.isdigit() and high.isdigit() and 1024 <= int(low) <= int(high) <= 65535):
            problems.append("ice.port_range: expected LOW-HIGH within 1024-65535")
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
        problems.append(f"redis_url: {problem}")
    if cluster.ledger_wait_replicas is not None and cluster.ledger_wait_replicas < 0:
        problems.append("cluster.ledger_wait_replicas: must be 0 or more (empty: automatic)")
    if not 0 < cluster.ledger_wait_timeout < 2:
        problems.append("cluster.ledger_wait_timeout: must be above 0 and below 2 s (the Redis call deadline)")
    if config.webhooks.urls and not config.webhooks.secret:
        problems.append("webhooks.secret: required when webhooks.urls is set")
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))


def effective(config: ServerConfig) -> dict[str, Any]:
    """The config as dotted keys with secrets masked, for ``switchboard config show``."""
    out: dict[str, Any] = {}
    for key in keys():
        section, _, field = key.partition(".")
        value = getattr(getattr(config, section), field) if field else getattr(config, key)
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
