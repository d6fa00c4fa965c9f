"""The JS SDK as an npm package (static/package.json): what it ships, and TypeScript declarations
generated from the SDK's JSDoc that match the checked-in static/switchboard.d.ts.

Regenerate after changing static/switchboard.js (docs/js-sdk.md):

    tests/node/node_modules/.bin/tsc <TSC_FLAGS> --outDir static static/switchboard.js
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "static"
TSC = REPO / "tests" / "node" / "node_modules" / ".bin" / "tsc"
#: ``--noCheck``: declarations only; type-checking the SDK is not this test's business.
TSC_FLAGS = [
    "--allowJs", "--declaration", "--emitDeclarationOnly", "--noCheck", "--target", "es2022",
    "--module", "es2022", "--lib", "es2022,dom", "--skipLibCheck",
]


def test_package_json_points_at_the_module_and_its_declarations() -> None:
    package = json.loads((STATIC / "package.json").read_text())
    assert package["type"] == "module"
    assert package["exports"]["."] == {"types": "./switchboard.d.ts", "default": "./switchboard.js"}
    for name in package["files"]:
        assert (STATIC / name).is_file(), name
    assert not package.get("dependencies"), "the SDK has no dependencies"


def test_npm_pack_ships_the_module_and_its_declarations_only() -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    result = subprocess.run(
        [npm, "pack", "--dry-run", "--json"], cwd=STATIC, capture_output=True, text=True, timeout=90, check=True
    )
    files = sorted(f["path"] for f in json.loads(result.stdout)[0]["files"])
    assert files == ["package.json", "switchboard.d.ts", "switchboard.js"]


def test_typescript_declarations_match_the_jsdoc(tmp_path: Path) -> None:
    if not TSC.exists():
        pytest.skip("typescript not installed: npm ci --prefix tests/node")
    result = subprocess.run(
        [str(TSC), *TSC_FLAGS, "--outDir", str(tmp_path), str(STATIC / "switchboard.js")],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    generated = (tmp_path / "switchboard.d.ts").read_text()
    assert "export class Room" in generated and "export class SignalingClient" in generated
    assert generated == (STATIC / "switchboard.d.ts").read_text(), (
        "static/switchboard.d.ts is stale: regenerate it (see this module's docstring)"
    )
