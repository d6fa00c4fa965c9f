"""Issue 14 finding 5: no ICE check reaches a private address a client names.

Runs ``tests/sfu/sfu_netns_scenario.py`` in a fresh network namespace (``unshare -n``, root
only): a listener on a private address that exists only inside that namespace must receive
nothing, while a listener in an allowed range (the control) receives the SFU's STUN checks.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import PATIENCE

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None,
    reason="needs root, unshare and ip to make a network namespace",
)


async def test_no_check_is_sent_to_a_private_address_a_client_names() -> None:
    process = await asyncio.create_subprocess_exec(
        "unshare", "-n", sys.executable, "-m", "tests.sfu.sfu_netns_scenario",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(PATIENCE):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()[-2000:]
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    # The control proves the listeners would have seen checks: one per allowed candidate.
    assert all(n >= 1 for n in result["allowed_stun_requests"]), result
    assert result["private_datagrams"] == 0, result
    assert result["trickled"] == {"private": "candidate-refused", "allowed": "accepted"}, result
    assert result["candidates_refused"] == 2, result
