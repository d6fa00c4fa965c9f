"""``switchboard turn …`` through click's test runner (no coturn needed here)."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from signaling.tools.cli import cli
from signaling.turn.credentials import MAX_TTL, sign

from .conftest import free_port

SECRET = "0123456789abcdef0123456789abcdef"
#: Every variable the commands read, unset, so the developer's shell cannot leak in.
CLEAN_ENV: dict[str, str | None] = {
    "SWITCHBOARD_ICE_TURN_SECRETS": None,
    "SWITCHBOARD_ICE_STUN_URLS": None,
    "SWITCHBOARD_ICE_TURN_URLS": None,
}


def run(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, ["turn", *args], env={**CLEAN_ENV, **env})


def test_credentials_json() -> None:
    before = int(time.time())
    result = run(
        "credentials",
        "--user=alice",
        "--ttl=600",
        "--url=turn:turn.example.org",
        "--url=turns:turn.example.org:443?transport=tcp",
        SWITCHBOARD_ICE_TURN_SECRETS=SECRET,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"username", "credential", "ttl", "uris"}
    expiry, _, user = data["username"].partition(":")
    assert user == "alice"
    assert before + 600 <= int(expiry) <= int(time.time()) + 600
    assert data["credential"] == sign(SECRET, data["username"])
    assert data["ttl"] == 600
    assert data["uris"] == ["turn:turn.example.org", "turns:turn.example.org:443?transport=tcp"]


def test_credentials_first_of_several_env_secrets_signs() -> None:
    result = run("credentials", SWITCHBOARD_ICE_TURN_SECRETS=f" {SECRET} , older-secret ")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["credential"] == sign(SECRET, data["username"])
    assert data["ttl"] == 4 * 3600
    assert data["uris"] == []


def test_credentials_flag_wins_over_env() -> None:
    result = run("credentials", "--secret=flag-secret", SWITCHBOARD_ICE_TURN_SECRETS=SECRET)
    data = json.loads(result.stdout)
    assert data["credential"] == sign("flag-secret", data["username"])


@pytest.mark.parametrize("env", [{}, {"SWITCHBOARD_ICE_TURN_SECRETS": " , "}])
def test_credentials_without_secret_fails_clearly(env: dict[str, str]) -> None:
    result = run("credentials", **env)
    assert result.exit_code == 2
    assert "no TURN secret" in result.output
    assert "SWITCHBOARD_ICE_TURN_SECRETS" in result.output
    assert result.stdout == ""


def test_credentials_rejects_unsafe_secret_without_echoing_it() -> None:
    result = run("credentials", "--secret=has space")
    assert result.exit_code == 2
    assert "has space" not in result.output


def test_credentials_ttl_is_capped() -> None:
    result = run("credentials", f"--ttl={MAX_TTL + 1}", SWITCHBOARD_ICE_TURN_SECRETS=SECRET)
    assert result.exit_code == 2
    assert "--ttl" in result.output


def test_credentials_rejects_a_stun_url() -> None:
    result = run("credentials", "--url=stun:example.org", SWITCHBOARD_ICE_TURN_SECRETS=SECRET)
    assert result.exit_code == 2
    assert "not a turn: or turns: URL" in result.output


def test_config_writes_a_private_file(tmp_path: Path) -> None:
    out = tmp_path / "turnserver.conf"
    result = run(
        "config",
        "--profile=test",
        "--realm=switchboard.test",
        "--port=3479",
        f"--output={out}",
        SWITCHBOARD_ICE_TURN_SECRETS="one,two",
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "static-auth-secret=one\nstatic-auth-secret=two\n" in text
    assert "listening-port=3479\n" in text
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_config_refuses_unsafe_settings() -> None:
    result = run("config", "--realm=turn.example.org", SWITCHBOARD_ICE_TURN_SECRETS="s" * 40)
    assert result.exit_code == 2
    assert "needs a TLS certificate" in result.output


def test_config_needs_a_secret() -> None:
    result = run("config", "--profile=test", "--realm=switchboard.test")
    assert result.exit_code == 2
    assert "no TURN secret" in result.output


def test_check_needs_something_to_check() -> None:
    result = run("check")
    assert result.exit_code == 2
    assert "nothing to check" in result.output


def test_check_turn_needs_credentials() -> None:
    result = run("check", "--turn=turn:127.0.0.1:3478")
    assert result.exit_code == 2
    assert "no TURN secret" in result.output


def test_check_username_needs_credential() -> None:
    result = run("check", "--turn=turn:127.0.0.1:3478", "--username=u")
    assert result.exit_code == 2
    assert "--username and --credential go together" in result.output


def test_check_rejects_a_turn_url_as_stun() -> None:
    result = run("check", "--stun=turn:127.0.0.1:3478")
    assert result.exit_code == 2
    assert "not a stun: or stuns: URL" in result.output


def test_check_reports_a_closed_port_as_failing() -> None:
    port = free_port()  # nothing listens there: UDP gets ICMP port unreachable, TCP a RST
    result = run(
        "check",
        f"--stun=stun:127.0.0.1:{port}",
        f"--turn=turn:127.0.0.1:{port}?transport=tcp",
        "--timeout=10",
        SWITCHBOARD_ICE_TURN_SECRETS=SECRET,
    )
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL  STUN")
    assert "nothing listens on UDP port" in lines[0]
    assert lines[1].startswith("FAIL  TURN")
    assert "nothing listens on TCP port" in lines[1]
    assert lines[2] == "2 of 2 checks failed."


def test_check_reads_urls_from_the_environment() -> None:
    port = free_port()
    result = run("check", "--json", "--timeout=10", SWITCHBOARD_ICE_STUN_URLS=f"stun:127.0.0.1:{port}")
    assert result.exit_code == 1, result.output
    (entry,) = json.loads(result.stdout)
    assert entry["kind"] == "stun"
    assert entry["ok"] is False
