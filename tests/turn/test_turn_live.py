"""Against a real coturn on 127.0.0.1, configured by our renderer.

Every address used here is loopback: clients talk to coturn on 127.0.0.1, coturn relays between
allocations on 127.0.0.1, and the denied-peer tests only *ask* for a permission to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from signaling.tools.cli import cli
from signaling.turn.client import TurnClient, open_connection
from signaling.turn.credentials import make_credentials
from signaling.turn.protocol import ErrorResponse
from signaling.turn.uris import parse_ice_uri

from .conftest import HOST, Coturn, new_secret, start_production

#: Seconds one turnutils_uclient run may take; it relays for ~5 s by design.
UCLIENT_TIMEOUT = 90
#: Seconds one TURN transaction sequence in these tests may take (generous: loaded CI).
CLIENT_TIMEOUT = 30


def asyncio_timeout() -> asyncio.Timeout:
    """The deadline of one test's TURN exchanges."""
    return asyncio.timeout(CLIENT_TIMEOUT)


def cli_run(*args: str, secret: str | None = None) -> Result:
    env = {
        "SWITCHBOARD_ICE_TURN_SECRETS": secret,
        "SWITCHBOARD_ICE_STUN_URLS": None,
        "SWITCHBOARD_ICE_TURN_URLS": None,
    }
    return CliRunner().invoke(cli, ["turn", *args], env=env)


def cli_credentials(secret: str, user: str = "alice") -> dict[str, str]:
    """Run ``switchboard turn credentials`` and return its JSON."""
    result = cli_run("credentials", f"--user={user}", "--ttl=600", secret=secret)
    assert result.exit_code == 0, result.output
    data: dict[str, str] = json.loads(result.stdout)
    return data


def uclient(coturn: Coturn, username: str, credential: str, *, tcp: bool = False) -> str:
    """Run coturn's own client: two allocations relaying to each other (-y), one message each.

    Returns its output; asserts nothing, so callers decide what success looks like.
    """
    binary = shutil.which("turnutils_uclient")
    if binary is None:
        pytest.fail("turnutils_uclient (package coturn) is not installed", pytrace=False)
    args = [binary, "-v", "-c", "-y", "-n", "1", "-z", "5", "-p", str(coturn.port)]
    if tcp:
        args.append("-t")
    args += ["-u", username, "-w", credential, HOST]
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=UCLIENT_TIMEOUT, stdin=subprocess.DEVNULL
    )
    return f"exit={proc.returncode}\n{proc.stdout}{proc.stderr}"


def assert_allocated_and_relayed(output: str) -> None:
    assert output.startswith("exit=0\n"), output
    assert "Received relay addr: 127.0.0.1:" in output, output
    assert "ERROR" not in output, output
    # The final tally: messages went client -> relay -> relay -> client.
    totals = re.findall(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\n", output)
    assert totals, output
    sent, received = map(int, totals[-1])
    assert sent >= 1 and received >= 1, output


def assert_refused(output: str) -> None:
    # Refused by the server, not unreachable: coturn answered, and no relay was granted.
    assert not output.startswith("exit=0\n"), output
    assert "allocate response received" in output, output
    assert "Cannot complete Allocation" in output, output
    assert "Received relay addr" not in output, output


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_uclient_allocates_with_cli_credentials(coturn_test: Coturn, tcp: bool) -> None:
    creds = cli_credentials(coturn_test.secrets[0], user="alice:with:colons")
    assert_allocated_and_relayed(
        uclient(coturn_test, creds["username"], creds["credential"], tcp=tcp)
    )


def test_uclient_refuses_expired_credentials(coturn_test: Coturn) -> None:
    # Minted an hour ago for one minute: expired 59 minutes ago, correctly signed.
    creds = make_credentials(coturn_test.secrets[0], "alice", 60, time.time() - 3600)
    assert_refused(uclient(coturn_test, creds.username, creds.credential))


def test_uclient_refuses_a_wrong_secret(coturn_test: Coturn) -> None:
    creds = cli_credentials(new_secret())
    assert_refused(uclient(coturn_test, creds["username"], creds["credential"]))


async def allocate(coturn: Coturn, username: str, credential: str, url: str | None = None) -> None:
    conn = await open_connection(parse_ice_uri(url or coturn.url()))
    async with TurnClient(conn, username, credential) as client:
        await client.allocate()


async def test_expired_and_wrong_credentials_get_401(coturn_test: Coturn) -> None:
    expired = make_credentials(coturn_test.secrets[0], "bob", 60, time.time() - 3600)
    wrong = make_credentials(new_secret(), "bob", 600, time.time())
    for creds in (expired, wrong):
        with pytest.raises(ErrorResponse) as info:
            async with asyncio_timeout():
                await allocate(coturn_test, creds.username, creds.credential)
        assert info.value.code == 401


async def test_rotation_both_secrets_are_accepted(coturn_test: Coturn) -> None:
    for secret in coturn_test.secrets:
        creds = make_credentials(secret, "carol", 600, time.time())
        async with asyncio_timeout():
            await allocate(coturn_test, creds.username, creds.credential)


def test_rotation_the_first_env_secret_signs(coturn_test: Coturn) -> None:
    old, new = coturn_test.secrets
    accepted = cli_run("check", f"--turn={coturn_test.url()}", secret=f"{new},{old}")
    assert accepted.exit_code == 0, accepted.output
    refused = cli_run("check", f"--turn={coturn_test.url()}", secret=f"{new_secret()},{old}")
    assert refused.exit_code == 1, refused.output


def test_check_reports_stun_and_turn_working(coturn_test: Coturn) -> None:
    result = cli_run(
        "check",
        f"--stun={coturn_test.url('stun')}",
        f"--turn={coturn_test.url()}",
        f"--turn={coturn_test.url(transport='tcp')}",
        "--timeout=30",
        secret=coturn_test.secrets[0],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok    STUN") and "binding answered" in lines[0]
    assert lines[1].startswith("ok    TURN") and "allocation granted" in lines[1]
    assert lines[2].startswith("ok    TURN") and "?transport=tcp" in lines[2]
    assert lines[3] == "All 3 checks passed."


def test_check_with_explicit_username_and_credential(coturn_test: Coturn) -> None:
    creds = cli_credentials(coturn_test.secrets[1])
    result = cli_run(
        "check",
        f"--turn={coturn_test.url()}",
        f"--username={creds['username']}",
        f"--credential={creds['credential']}",
        "--timeout=30",
    )
    assert result.exit_code == 0, result.output


def test_check_reports_a_wrong_secret(coturn_test: Coturn) -> None:
    result = cli_run(
        "check",
        f"--stun={coturn_test.url('stun')}",
        f"--turn={coturn_test.url()}",
        "--timeout=30",
        secret=new_secret(),
    )
    assert result.exit_code == 1, result.output
    stun_line, turn_line, verdict = result.stdout.splitlines()
    assert stun_line.startswith("ok    STUN")
    assert turn_line.startswith("FAIL  TURN")
    assert "401 Unauthorized" in turn_line and "wrong secret or expired credentials" in turn_line
    assert verdict == "1 of 2 checks failed."


async def test_test_profile_grants_a_loopback_peer(coturn_test: Coturn) -> None:
    """Control for the next tests: the same request succeeds when loopback is allowed."""
    creds = make_credentials(coturn_test.secrets[0], "dave", 600, time.time())
    conn = await open_connection(parse_ice_uri(coturn_test.url()))
    async with asyncio_timeout(), TurnClient(conn, creds.username, creds.credential) as client:
        await client.allocate()
        await client.create_permission((HOST, 9))


async def refused_permission(coturn: Coturn) -> ErrorResponse:
    creds = make_credentials(coturn.secrets[0], "mallory", 600, time.time())
    conn = await open_connection(parse_ice_uri(coturn.url()))
    async with asyncio_timeout(), TurnClient(conn, creds.username, creds.credential) as client:
        allocation = await client.allocate()
        assert allocation.relayed[0] == HOST
        with pytest.raises(ErrorResponse) as info:
            await client.create_permission((HOST, 9))
    return info.value


async def test_production_refuses_a_loopback_peer(coturn_production: Coturn) -> None:
    error = await refused_permission(coturn_production)
    assert error.code == 403
    assert "Forbidden IP" in error.reason


@pytest.fixture
def coturn_production_loopback_allowed(tmp_path: Path) -> Iterator[Coturn]:
    """Production profile plus coturn's allow-loopback-peers: only our ranges stand in the way."""
    yield from start_production(tmp_path, extra_config="allow-loopback-peers\n")


async def test_production_denied_range_refuses_loopback_on_its_own(
    coturn_production_loopback_allowed: Coturn,
) -> None:
    # coturn also refuses loopback by default; with that switched off, the 127.0.0.0/8
    # denied-peer-ip range alone must still refuse.
    error = await refused_permission(coturn_production_loopback_allowed)
    assert error.code == 403


def test_check_over_tls(coturn_production: Coturn) -> None:
    assert coturn_production.cafile is not None
    turns = coturn_production.url("turns")
    trusted = cli_run(
        "check",
        f"--stun={coturn_production.url('stun')}",
        f"--turn={turns}",
        f"--cafile={coturn_production.cafile}",
        "--timeout=30",
        secret=coturn_production.secrets[0],
    )
    assert trusted.exit_code == 0, trusted.output
    untrusted = cli_run(
        "check", f"--turn={turns}", "--timeout=30", secret=coturn_production.secrets[0]
    )
    assert untrusted.exit_code == 1
    assert "TLS certificate not trusted" in untrusted.stdout
