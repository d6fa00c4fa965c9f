"""The JS SDK's close-code and error-code tables (static/switchboard.js ``ClientAction``,
``CLOSE_CODES``, ``ERROR_CODES``) are copies of the one table in signaling/core/codes.py: read
from the module by node and compared entry by entry, so a code added or changed on one side only
fails here."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from signaling.core.codes import ClientAction, Close, Err

REPO = Path(__file__).resolve().parents[2]

_DUMP = """
const sdk = await import(process.argv[1]);
console.log(JSON.stringify({actions: sdk.ClientAction, close: sdk.CLOSE_CODES, errors: sdk.ERROR_CODES}));
"""


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (apt-get install nodejs)")
    return node


def _js_tables() -> dict[str, dict[str, object]]:
    module = (REPO / "static" / "switchboard.js").as_uri()
    run = subprocess.run([_node(), "--input-type=module", "-e", _DUMP, module], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    tables: dict[str, dict[str, object]] = json.loads(run.stdout)
    return tables


def test_the_js_tables_are_the_python_ones() -> None:
    js = _js_tables()
    assert js["actions"] == {a.name: a.value for a in ClientAction}
    assert js["close"] == {str(c.code): {"name": c.name, "action": c.action.value} for c in Close.all()}
    assert js["errors"] == {e.code: {"retryable": e.retryable} for e in Err.all()}
