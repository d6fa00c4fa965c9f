"""The layers are checked, not only described (STYLE: layers are packages, and the rules between
them are checked): the import contracts in pyproject.toml (``[tool.importlinter]``) hold, and
every module of ``signaling`` is placed on one side of the pure-core contract, so a module added
tomorrow cannot slip past it unclassified.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import signaling

ROOT = Path(__file__).resolve().parents[2]


def _contracts() -> dict[str, dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def test_the_import_contracts_hold() -> None:
    # In a child process of this interpreter: lint-imports configures logging (dictConfig), which
    # would silence the project's loggers for every later test of this session.
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
         "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "BROKEN" not in out
    assert out.count("KEPT") == len(_contracts())


def test_the_contracts_we_rely_on_exist() -> None:
    contracts = _contracts()
    assert contracts["sfu-alone"]["forbidden_modules"] == ["signaling"]
    assert {"aiohttp", "redis", "aiortc", "asyncio"} <= set(contracts["pure-core"]["forbidden_modules"])
    assert contracts["no-cycles"]["type"] == "acyclic_siblings"
    assert "signaling.client.core" in contracts["pure-core"]["source_modules"]
    assert {"signaling.server.hub", "signaling.server", "signaling.backend"} <= set(contracts["sdk"]["forbidden_modules"])


def _covers(names: list[str], module: str) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


#: Packages whose ``__init__`` only re-exports their modules (each placed on its own).
FACADES = {"signaling.client"}


def test_every_signaling_module_is_core_or_shell() -> None:
    contract = _contracts()["pure-core"]
    core = contract["source_modules"]
    shell = [m for m in contract["forbidden_modules"] if m.startswith("signaling")]
    modules = [i.name for i in pkgutil.walk_packages(signaling.__path__, prefix="signaling.") if i.name not in FACADES]
    assert "signaling.server.hub" in modules
    unplaced = [m for m in modules if not _covers(core, m) and not _covers(shell, m)]
    assert not unplaced, f"name these in pyproject's pure-core contract (core or shell): {unplaced}"
    both = [m for m in modules if _covers(core, m) and _covers(shell, m) and m not in core]
    assert not both, f"placed on both sides: {both}"
