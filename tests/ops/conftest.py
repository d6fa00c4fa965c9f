"""Operator tooling against real servers on loopback: the CLI runs in a worker thread.

Click's ``CliRunner`` is synchronous and our commands call ``asyncio.run`` themselves, while the
server under test runs in the test's event loop: so every invocation goes through
``asyncio.to_thread``. The runner swaps process-wide stdio and environment, so invocations are
never concurrent (one lock), and each one checks that the admin token never reached the output.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Mapping

import click
import pytest
from click.testing import CliRunner, Result

from signaling.tools.admin_cli import admin
from signaling.tools.loadtest import loadtest
from tests.conftest import RunningServer, ServerFactory, make_config

TOKEN = "ops-test-token-5f0c2a9e"
#: Variables the commands read: unset unless a test sets them, so the developer's shell cannot leak in.
CLEAN_ENV: dict[str, str | None] = {"SWITCHBOARD_ADMIN_URL": None, "SWITCHBOARD_ADMIN_TOKEN": None, "SWITCHBOARD_SECURITY_METRICS_TOKEN": None,
                                     "COLUMNS": "200"}


@click.group()
def ops_cli() -> None:
    """Stand-in for ``switchboard``: only the commands under test."""


ops_cli.add_command(admin)
ops_cli.add_command(loadtest)

_lock = threading.Lock()


def _invoke_locked(args: list[str], env: dict[str, str | None], stdin: str | None) -> Result:
    with _lock:
        return CliRunner().invoke(ops_cli, args, input=stdin, env=env)


async def invoke(*args: str, env: Mapping[str, str] | None = None, stdin: str | None = None) -> Result:
    result = await asyncio.to_thread(_invoke_locked, list(args), {**CLEAN_ENV, **(env or {})}, stdin)
    assert TOKEN not in result.output, "the admin token was printed"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback instead of a clean error: {result.exception!r}\n{result.output}")
    return result


async def admin_cmd(server: RunningServer, *args: str, token: str = TOKEN, stdin: str | None = None) -> Result:
    """``switchboard admin ARGS`` against ``server``, URL and token from the environment."""
    env = {"SWITCHBOARD_ADMIN_URL": server.http_url, "SWITCHBOARD_ADMIN_TOKEN": token}
    return await invoke("admin", *args, env=env, stdin=stdin)


@pytest.fixture
async def admin_server(start_server: ServerFactory) -> RunningServer:
    return await start_server(make_config(admin_token=TOKEN))


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
