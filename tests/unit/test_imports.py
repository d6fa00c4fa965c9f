"""Every module of the shipped packages imports in the installed environment.

A fresh ``pip install -e .`` holds only the dependencies pyproject.toml declares; a module that
imports an undeclared package (PyJWT once) fails here, in CI's fresh virtualenv, instead of at a
newcomer's first ``switchboard serve``. Modules are walked, not listed, so a new one is covered
the day it is added.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import sfu
import signaling


def _modules() -> list[str]:
    names: list[str] = []
    for package in (signaling, sfu):
        names.append(package.__name__)
        names.extend(
            info.name for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + ".")
        )
    return sorted(names)


MODULES = _modules()


def test_the_walk_finds_the_packages() -> None:
    # A walk that finds nothing would make every parametrised case below vanish silently.
    assert "signaling.cli" in MODULES
    assert "signaling.auth" in MODULES
    assert "sfu.service" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)
