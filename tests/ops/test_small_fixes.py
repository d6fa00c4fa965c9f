"""Small things a newcomer met: loadtest's default rooms, plurals, help texts, library log noise."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import aiohttp
import pytest
from click.testing import CliRunner

from signaling.tools.admin_cli import admin, plural
from signaling.tools.cli import cli, setup_logging
from signaling.turn.check import CheckResult, format_report
from tests.conftest import RunningServer, ServerFactory, make_config

from .conftest import TOKEN, invoke


async def test_loadtest_with_fewer_participants_than_default_rooms(start_server: ServerFactory) -> None:
    server = await start_server(make_config())
    result = await invoke("loadtest", "--url", server.url, "-n", "5", "-d", "0.3", "--ramp", "0")
    assert result.exit_code == 0, result.output
    assert "5 in 5 rooms" in result.stdout


async def test_loadtest_one_participant_one_room(start_server: ServerFactory) -> None:
    server = await start_server(make_config())
    result = await invoke("loadtest", "--url", server.url, "-n", "1", "-d", "0.2", "--ramp", "0")
    assert result.exit_code == 0, result.output
    assert "1 in 1 room," in result.stdout


def test_plural() -> None:
    assert plural(1, "room") == "1 room"
    assert plural(0, "room") == "0 rooms"
    assert plural(2.0, "participant") == "2 participants"


def test_turn_check_report_plural() -> None:
    one = [CheckResult("stun", "stun:127.0.0.1:3478", True, "binding ok", 1)]
    assert format_report(one).splitlines()[-1] == "The check passed."
    failed = [CheckResult("stun", "stun:127.0.0.1:3478", False, "binding failed: timeout", 1)]
    assert format_report(failed).splitlines()[-1] == "1 of 1 check failed."


@pytest.mark.parametrize(
    ("args", "wrong"),
    [
        (["participants", "--help"], "list, kick."),
        (["nodes", "--help"], "For now"),
    ],
)
def test_admin_help_texts(args: list[str], wrong: str) -> None:
    result = CliRunner().invoke(admin, args)
    assert result.exit_code == 0
    assert wrong not in result.output
    assert "mute" in CliRunner().invoke(admin, ["participants", "--help"]).output


def test_sfu_redis_help_is_not_the_embedded_default() -> None:
    result = CliRunner().invoke(cli, ["sfu", "--help"])
    assert "(default: one process, memory)" not in result.output


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), {n: logging.getLogger(n).level for n in ("aioice", "aiortc")})
    yield
    root.setLevel(saved[0])
    for handler in list(root.handlers):
        if handler not in saved[1]:
            root.removeHandler(handler)
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("level", "library_level"),
    [("info", logging.WARNING), ("warning", logging.WARNING), ("error", logging.ERROR), ("debug", logging.DEBUG)],
)
def test_ice_libraries_log_per_check_lines_only_in_debug(level: str, library_level: int) -> None:
    setup_logging(level, "text")
    for name in ("aioice", "aiortc", "aioice.ice"):
        logger = logging.getLogger(name)
        assert logger.getEffectiveLevel() == library_level
        assert logger.isEnabledFor(logging.INFO) is (level == "debug")


@pytest.mark.parametrize("action", ["kick", "mute"])
async def test_admin_non_json_body_is_400(admin_server: RunningServer, action: str) -> None:
    # docs/admin-api.md: a body that is not JSON gets 400 {"error": "body must be JSON"}, not a 500.
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        url = f"{admin_server.http_url}/admin/participants/p_x/{action}"
        async with http.post(url, data=b"{not json", headers=headers) as response:
            assert response.status == 400
            assert await response.json() == {"error": "body must be JSON"}
