"""The one loopback rule (serve without tokens, admin token over http, load-test targets)."""

from __future__ import annotations

import pytest

from signaling.core.loopback import is_loopback


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST", "localhost.", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "::1%lo", "::1%25",
     "0:0:0:0:0:0:0:1"],
)
def test_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host",
    ["", "0.0.0.0", "::", "10.0.0.1", "::ffff:127.0.0.1", "[::ffff:127.0.0.2]", "192.168.1.1", "::ffff:10.0.0.1", "example.com", "localhost.example.com",
     "127.0.0.1.nip.io", "[127.0.0.1]x", "fe80::1%lo", "[::2]", "localhost:8080"],
)
def test_not_loopback(host: str) -> None:
    assert not is_loopback(host)
