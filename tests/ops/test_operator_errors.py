"""Operator mistakes: one line on stderr naming the flag or key, exit 2, never a traceback.

Each case runs the real ``switchboard`` command line (Click's runner, the process environment
cleared of ``SWITCHBOARD_*``); the servers and sockets involved are real ones on loopback.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from signaling.core import settings
from signaling.core.config import ServerConfig
from signaling.tools.cli import SFU_DEFAULT_PORT, cli
from tests.conftest import PATIENCE, free_port
from tests.integration.test_tls import self_signed


def _clean_env() -> dict[str, str | None]:
    return {name: None for name in os.environ if name.startswith("SWITCHBOARD_")}


def run(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={**_clean_env(), **env})


def assert_one_line(result: Result, *needles: str) -> str:
    """Exit 2, no traceback, and the error is one line holding every needle."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert "Usage:" not in result.output, "an operator mistake is one line, not a usage dump"
    return errors[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port somebody listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_port_in_use(busy_port: int) -> None:
    result = run("serve", "--port", str(busy_port), "--no-sfu")
    assert_one_line(result, f"--port {busy_port}", "already in use", "SWITCHBOARD_PORT")


def test_port_in_use_from_the_environment(busy_port: int) -> None:
    result = run("serve", "--no-sfu", SWITCHBOARD_PORT=str(busy_port))
    assert_one_line(result, "already in use", "SWITCHBOARD_PORT")


def test_host_not_on_this_machine() -> None:
    key = "k1:" + "s" * 40
    result = run("serve", "--host", "192.0.2.1", "--port", str(free_port()), "--token-key", key, "--no-sfu")
    assert_one_line(result, "--host 192.0.2.1", "not an address of this machine")


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (("--tls-cert", "CERT"), ("tls_key: required with tls_cert", "--tls-key", "SWITCHBOARD_TLS_KEY")),
        (("--tls-key", "KEY"), ("tls_cert: required with tls_key", "--tls-cert", "SWITCHBOARD_TLS_CERT")),
        (("--tls-cert", "MISSING", "--tls-key", "KEY"), ("--tls-cert", "cannot read it", "No such file")),
        (("--tls-cert", "CERT", "--tls-key", "MISSING"), ("--tls-key", "cannot read it")),
        (("--tls-cert", "KEY", "--tls-key", "KEY"), ("--tls-cert", "not a PEM certificate")),
        (("--tls-cert", "CERT", "--tls-key", "CERT"), ("--tls-key", "not a PEM private key")),
        (("--tls-cert", "CERT", "--tls-key", "OTHER_KEY"), ("--tls-key", "does not belong to --tls-cert")),
    ],
)
def test_tls_mistakes(tmp_path: Path, flags: tuple[str, ...], needles: tuple[str, ...]) -> None:
    cert, key = self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = self_signed(other)
    paths = {"CERT": str(cert), "KEY": str(key), "OTHER_KEY": str(other_key), "MISSING": str(tmp_path / "nope.pem")}
    args = [paths.get(flag, flag) for flag in flags]
    result = run("serve", "--port", str(free_port()), "--no-sfu", *args)
    assert_one_line(result, *needles)


def test_unreadable_tls_key(tmp_path: Path) -> None:
    # A path that cannot be read even by root (the suite runs as root in CI): a directory.
    cert, _ = self_signed(tmp_path)
    result = run("serve", "--port", str(free_port()), "--no-sfu", "--tls-cert", str(cert), "--tls-key", str(tmp_path))
    assert_one_line(result, f"--tls-key {tmp_path}", "cannot read it", "SWITCHBOARD_TLS_KEY")


def test_redis_unreachable() -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{closed_port()}/0"
    result = run("serve", "--port", str(free_port()), "--redis", url)
    line = assert_one_line(result, "--redis", "Redis does not answer", "SWITCHBOARD_REDIS_URL")
    assert "hunter2-secret" not in result.output, line


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis://127.0.0.1:99999/0"])
def test_redis_url_malformed(url: str) -> None:
    result = run("serve", "--port", str(free_port()), "--redis", url)
    assert_one_line(result, "--redis", "malformed Redis URL", "SWITCHBOARD_REDIS_URL")


def test_sfu_redis_unreachable() -> None:
    result = run("sfu", "--port", str(free_port()), "--redis", f"redis://127.0.0.1:{closed_port()}/0")
    assert_one_line(result, "--redis", "Redis does not answer")


def test_sfu_needs_redis() -> None:
    assert_one_line(run("sfu", "--port", str(free_port())), "--redis", "SWITCHBOARD_REDIS_URL")


def test_turn_url_without_secret() -> None:
    result = run("serve", "--port", str(free_port()), "--no-sfu", "--turn", "turn:turn.example.com:3478")
    assert_one_line(result, "ice.turn_secrets", "--turn-secret", "SWITCHBOARD_ICE_TURN_SECRETS")


def test_bad_ice_url() -> None:
    result = run("serve", "--port", str(free_port()), "--no-sfu", "--stun", "http://nope")
    assert_one_line(result, "--stun")


def test_bad_config_value_is_one_line() -> None:
    result = run("serve", "--no-sfu", "--set", "heartbeat.interval=40")
    assert_one_line(result, "heartbeat.interval")


def test_public_bind_without_tokens_is_one_line() -> None:
    result = run("serve", "--host", "0.0.0.0", "--no-sfu")
    assert_one_line(result, "without access tokens", "--token-key", "SWITCHBOARD_SECURITY_TOKEN_KEYS")


def test_sfu_port_is_not_serves() -> None:
    assert ServerConfig().port != SFU_DEFAULT_PORT
    assert settings.load(env={}, defaults={"port": SFU_DEFAULT_PORT}).port == SFU_DEFAULT_PORT
    # A port from the environment or a flag still wins over the command's default.
    assert settings.load(env={"SWITCHBOARD_PORT": "9200"}, defaults={"port": SFU_DEFAULT_PORT}).port == 9200
    assert settings.load(env={}, overrides={"port": 9300}, defaults={"port": SFU_DEFAULT_PORT}).port == 9300
    help_text = run("sfu", "--help").output
    assert str(SFU_DEFAULT_PORT) in help_text
    assert "memory" not in help_text, "sfu --redis is required, not a memory default"


def test_unknown_variable_is_warned_about_once(busy_port: int) -> None:
    result = run("serve", "--port", str(busy_port), "--no-sfu", SWITCHBOARD_TURN_SECRET="x" * 40)
    warnings = [line for line in result.output.splitlines() if "SWITCHBOARD_TURN_SECRET" in line]
    assert warnings == [
        "warning: unknown environment variable SWITCHBOARD_TURN_SECRET is ignored; "
        "did you mean SWITCHBOARD_ICE_TURN_SECRETS?"
    ]


def test_known_and_test_variables_are_not_warned_about() -> None:
    env = {name: "1" for name in settings.env_names()} | {"SWITCHBOARD_TEST_TIME_SCALE": "3", "OTHER": "1"}
    assert settings.unknown_env(env) == []
    assert settings.unknown_env({"SWITCHBOARD_PROT": "1"}) == [
        "unknown environment variable SWITCHBOARD_PROT is ignored; did you mean SWITCHBOARD_PORT?"
    ]


async def _serve_until_listening(*args: str) -> list[str]:
    """Start ``switchboard serve`` in a process, return its lines up to the log line, stop it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signaling", "serve", "--no-sfu", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(PATIENCE * 2):
            while not any("INFO signaling.server" in line and "listening" in line for line in lines):
                raw = await proc.stdout.readline()
                assert raw, f"server exited: {lines}"
                lines.append(raw.decode())
    finally:
        proc.terminate()
        await proc.wait()
    return lines


async def test_log_line_says_https_with_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    lines = await _serve_until_listening("--port", str(free_port()), "--tls-cert", str(cert), "--tls-key", str(key))
    logged = next(line for line in lines if "INFO signaling.server" in line)
    assert "listening on https://127.0.0.1:" in logged
