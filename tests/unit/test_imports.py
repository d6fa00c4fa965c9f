"""Every module of the shipped packages imports in the installed environment, and every
third-party package they import is declared in pyproject.toml.

A fresh ``pip install -e .`` holds only the dependencies pyproject.toml declares; a module that
imports an undeclared package (PyJWT once) fails here, in CI's fresh virtualenv, instead of at a
newcomer's first ``switchboard serve``. Modules are walked, not listed, so a new one is covered
the day it is added. Importing is not enough on its own: a package that arrives only through
another dependency (PyAV through aiortc) imports fine until that dependency stops requiring it,
so the imports are also read from the source and checked against ``[project].dependencies``.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import sfu
import signaling
import switchboard


def _modules() -> list[str]:
    names: list[str] = []
    for package in (signaling, sfu, switchboard):
        names.append(package.__name__)
        names.extend(
            info.name for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + ".")
        )
    return sorted(names)


MODULES = _modules()


def test_the_walk_finds_the_packages() -> None:
    # A walk that finds nothing would make every parametrised case below vanish silently.
    assert "signaling.tools.cli" in MODULES
    assert "signaling.core.auth" in MODULES
    assert "sfu.service" in MODULES
    assert "switchboard.room" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)


ROOT = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_norm(re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0]) for req in project["dependencies"]}


def _imported() -> dict[str, str]:
    """Top-level names imported (at any depth of a module) by the shipped packages, with one
    file that imports each."""
    found: dict[str, str] = {}
    for package in ("signaling", "sfu", "switchboard"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in ("signaling", "sfu", "switchboard", "__future__"):
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_declared() -> None:
    declared = _declared()
    distributions = metadata.packages_distributions()
    imported = _imported()
    assert "aiohttp" in imported and "jwt" in imported  # the walk reads the sources
    undeclared = {
        module: where
        for module, where in imported.items()
        if not {_norm(d) for d in distributions.get(module, [module])} & declared
    }
    assert not undeclared, f"imported but not in [project].dependencies: {undeclared}"
