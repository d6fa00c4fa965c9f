"""One exception root per package family (STYLE: typed errors carry their code).

Every exception class defined in ``signaling`` derives from ``SwitchboardError`` and sits on one
side of the peer/internal split (or is a coded media refusal / the cluster's ``SessionMoved``);
every one defined in ``sfu`` derives from ``sfu.errors.SfuException`` (``sfu`` never imports
``signaling``). Modules are walked, so a class added tomorrow is checked too.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import sfu
import signaling
from sfu.errors import SfuError, SfuException
from signaling.backend.media import MEDIA_REFUSALS
from signaling.core.errors import (
    InternalError,
    MediaError,
    PeerError,
    ResumeRefusal,
    ResumeRefused,
    SessionMoved,
    SwitchboardError,
)
from signaling.core.sfu_rpc import RemoteMediaError


def _defined_exceptions(package: object) -> list[type[BaseException]]:
    path = package.__path__  # type: ignore[attr-defined]
    prefix = package.__name__ + "."  # type: ignore[attr-defined]
    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(path, prefix=prefix):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == info.name:
                found.append(cls)
    return found


SIGNALING = _defined_exceptions(signaling)
SFU = _defined_exceptions(sfu)


def test_the_walk_finds_the_exceptions() -> None:
    names = {c.__name__ for c in SIGNALING}
    assert {"ProtocolError", "AuthError", "BackendUnavailable", "ResumeRefused", "Problem"} <= names
    assert {"SfuError", "AiortcInternalsError", "SdpError"} <= {c.__name__ for c in SFU}


@pytest.mark.parametrize("cls", SIGNALING, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_signaling_exception_has_the_root(cls: type[BaseException]) -> None:
    assert issubclass(cls, SwitchboardError)
    if cls is not SwitchboardError:
        assert issubclass(cls, PeerError | InternalError | MediaError | SessionMoved)


@pytest.mark.parametrize("cls", SFU, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_sfu_exception_has_the_sfu_root(cls: type[BaseException]) -> None:
    assert issubclass(cls, SfuException)


def test_media_refusals_carry_their_code() -> None:
    for exc in (SfuError("bad-sdp", "no m-line"), RemoteMediaError("sfu-unavailable", "down"), MediaError("x", "y")):
        assert isinstance(exc, MEDIA_REFUSALS)
    with pytest.raises(MEDIA_REFUSALS) as caught:
        raise RemoteMediaError("not-joined", "left")
    assert caught.value.code == "not-joined"
    assert str(caught.value) == "left"


def test_resume_refused_names_its_reason() -> None:
    refused = ResumeRefused(ResumeRefusal.BAD_TOKEN, "bad resume token")
    assert isinstance(refused, PeerError)
    assert refused.reason.value == "bad-token"
    assert str(refused) == "bad resume token"
    assert str(ResumeRefused(ResumeRefusal.UNKNOWN)) == "unknown"
