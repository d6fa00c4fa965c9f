"""The layers are checked, not only described (STYLE: layers are packages, and the rules between
them are checked): the import contracts in pyproject.toml (``[tool.importlinter]``) hold, and
every module of ``signaling`` lives in one of the layer packages the contracts name, so a module added
tomorrow cannot slip past them unplaced; and ``signaling.cluster`` is loaded only by a node run with
``--redis``.
"""

from __future__ import annotations

import json
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
    assert {"aiohttp", "redis", "aiortc", "asyncio", "sfu"} <= set(contracts["pure-core"]["forbidden_modules"])
    assert contracts["pure-core"]["source_modules"] == ["signaling.core"]
    assert contracts["no-cycles"]["type"] == "acyclic_siblings"
    assert "signaling.client.core" in contracts["pure-outside-core"]["source_modules"]
    assert {"signaling.server", "signaling.backend", "signaling.cluster"} <= set(contracts["sdk"]["forbidden_modules"])
    layers = contracts["layers"]["layers"]
    assert layers[0] == "signaling.tools" and layers[-1] == "signaling.core"
    assert layers.index("signaling.server") < layers.index("signaling.cluster")


def _layer_packages() -> list[str]:
    return [p.strip() for layer in _contracts()["layers"]["layers"] for p in layer.split("|")]


#: Modules of ``signaling`` outside the layer packages: the root package and ``python -m signaling``.
ROOT_MODULES = {"signaling.__main__"}


def test_every_signaling_module_lives_in_a_layer_package() -> None:
    """A module's package places it: there are no flat modules beside the layer packages, so a
    new module is under the contracts of its package the day it is added."""
    packages = _layer_packages()
    modules = [i.name for i in pkgutil.walk_packages(signaling.__path__, prefix="signaling.")]
    assert "signaling.server.hub" in modules
    unplaced = [m for m in modules if m not in ROOT_MODULES and not any(m == p or m.startswith(p + ".") for p in packages)]
    assert not unplaced, f"put these in one of the layer packages {packages}: {unplaced}"


#: Runs the embedded node as `switchboard serve` does (the CLI module loaded, the app built with
#: its in-process SFU, served on loopback, one SDK client joined and gone), then reports which
#: signaling.cluster modules (and whether redis-py) got loaded; then builds a --redis app (no
#: connection is made before startup) to show that the same check sees them when they are.
_EMBEDDED = """
import asyncio, json, sys
from dataclasses import replace

import signaling.tools.cli  # noqa: F401  (the entry point of `switchboard serve`)
from signaling.client import Client, Joined
from signaling.core.config import ServerConfig
from signaling.server.app import build_app, listener, make_runner


def loaded():
    return sorted(m for m in sys.modules if m.startswith("signaling.cluster") or m == "redis")


async def embedded():
    config = ServerConfig(host="127.0.0.1", port=0)
    runner = make_runner(build_app(config), config, shutdown_timeout=5)
    await runner.setup()
    site = listener(runner, config, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with asyncio.timeout(30), Client(f"ws://127.0.0.1:{port}/ws", "r", name="a") as client:
            while not isinstance(await client.next_event(), Joined):
                pass
    finally:
        await runner.cleanup()


asyncio.run(embedded())
embedded_loaded = loaded()
build_app(replace(ServerConfig(host="127.0.0.1", port=0, sfu=False), redis_url="redis://127.0.0.1:1"))
print(json.dumps({"embedded": embedded_loaded, "cluster": loaded()}))
"""


def test_the_embedded_node_loads_no_cluster_module() -> None:
    """``signaling.cluster`` is imported only lazily, with ``--redis``: import-linter counts
    function-level imports as imports, so this is checked by running the embedded path."""
    run = subprocess.run([sys.executable, "-c", _EMBEDDED], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["embedded"] == [], f"the embedded node loaded {result['embedded']}"
    assert "signaling.cluster.redis_backend" in result["cluster"] and "redis" in result["cluster"]
