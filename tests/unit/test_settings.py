"""Configuration: precedence, coercion, errors that name the key, masking."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from signaling.core import settings
from signaling.tools.cli import cli


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    file = tmp_path / "sb.toml"
    file.write_text('port = 7000\nnode_id = "from-file"\n[heartbeat]\ninterval = 4\ntimeout = 12\n')
    env = {"SWITCHBOARD_PORT": "7100", "SWITCHBOARD_HEARTBEAT_TIMEOUT": "15"}
    config = settings.load(overrides={"port": 7200}, env=env, file=file)
    assert config.port == 7200
    assert config.heartbeat.timeout == 15.0
    assert config.heartbeat.interval == 4.0
    assert config.node_id == "from-file"


def test_lists_pairs_bools_and_optionals() -> None:
    env = {
        "SWITCHBOARD_ICE_STUN_URLS": "stun:a:3478, stun:b:3478",
        "SWITCHBOARD_SECURITY_TOKEN_KEYS": "k1:" + "s" * 40 + ",k2:" + "t" * 40,
        "SWITCHBOARD_SFU": "false",
        "SWITCHBOARD_ICE_ANNOUNCE_IP": "",
    }
    config = settings.load(env=env)
    assert config.ice.stun_urls == ("stun:a:3478", "stun:b:3478")
    assert config.security.token_keys == (("k1", "s" * 40), ("k2", "t" * 40))
    assert config.sfu is False
    assert config.ice.announce_ip is None


@pytest.mark.parametrize(
    ("overrides", "env", "needle"),
    [
        ({"heartbeat.interval": "abc"}, {}, "heartbeat.interval: expected a number, got 'abc' (from command line)"),
        ({}, {"SWITCHBOARD_PORT": "x"}, "port: expected an integer, got 'x' (from SWITCHBOARD_PORT)"),
        ({"nope": 1}, {}, "unknown key nope"),
        ({"heartbeat.interval": 40}, {}, "heartbeat.interval: must be in (0, 30]"),
        ({"heartbeat.interval": 10, "heartbeat.timeout": 5}, {}, "heartbeat.timeout: must exceed"),
        ({"security.token_keys": "nocolon"}, {}, "security.token_keys: expected KID:SECRET"),
    ],
)
def test_errors_name_the_key(overrides: dict[str, object], env: dict[str, str], needle: str) -> None:
    with pytest.raises(settings.ConfigError) as info:
        settings.load(overrides=overrides, env=env)
    assert needle in str(info.value)


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text("port = = 1")
    with pytest.raises(settings.ConfigError, match=r"bad\.toml"):
        settings.load(env={}, file=file)


def test_config_show_masks_secrets() -> None:
    secret = "z" * 40
    result = CliRunner().invoke(
        cli, ["config", "show", "--json", "--token-key", f"k1:{secret}", "--admin-token", "adm1n-secret", "--turn-secret", "tt" * 20],
    )
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    assert "adm1n-secret" not in result.output
    assert "tt" * 20 not in result.output
    assert '"k1:****"' in result.output


def test_serve_refuses_public_bind_without_tokens() -> None:
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 2
    assert "refusing to serve on 0.0.0.0 without access tokens" in result.output
