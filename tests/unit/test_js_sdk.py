"""The browser SDK's unit tests (static/test/*.test.mjs, node's built-in runner) under pytest, so
the project's single test command runs them too. They use a fake socket and a fake clock: no
network, no real time."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JS_TESTS = REPO / "static" / "test"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (apt-get install nodejs)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    match = re.match(r"v(\d+)", version.strip())
    if match is None or int(match.group(1)) < 20:
        pytest.skip(f"node >= 20 needed for `node --test`, found {version.strip()}")
    return node


def test_js_sdk_unit_tests_pass() -> None:
    node = _node()
    result = subprocess.run(
        [node, "--test", "--test-reporter=spec", str(JS_TESTS.relative_to(REPO)) + "/"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"node --test failed ({result.returncode}):\n{output}"
    passed = re.search(r"^\S*\s*pass (\d+)$", output, re.MULTILINE)
    failed = re.search(r"^\S*\s*fail (\d+)$", output, re.MULTILINE)
    assert passed is not None and failed is not None, f"unexpected runner output:\n{output}"
    assert int(failed.group(1)) == 0, output
    assert int(passed.group(1)) >= 40, f"too few JS tests ran:\n{output}"
