"""The hiredis command packer of every cluster client writes the bytes redis-py's own would."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from signaling.cluster.connect import _hiredis_packing

pytest.importorskip("hiredis")

CASES: list[tuple[Any, ...]] = [
    ("EVALSHA", "0123abcd", 2, "sb:inbox:b", "sb:peers", "x" * 5000, 12, 1.5, "é\u2028", b"\x00\xff"),
    ("SCRIPT LOAD", "return 1"),  # a command name with a space is split, as redis-py does
    (b"XADD", b"s", "*", "f", memoryview(b"zz"), bytearray(b"yy")),
    ("XREAD", "BLOCK", 0, "COUNT", 10**20, "STREAMS", "s", "0-0"),
]


def _wire(chunks: list[Any]) -> bytes:
    return b"".join(bytes(chunk) for chunk in chunks)


@pytest.mark.parametrize("args", CASES)
def test_same_bytes_as_redis_py(args: tuple[Any, ...]) -> None:
    fast, plain = _hiredis_packing(Connection)(), Connection()
    assert _wire(fast.pack_command(*args)) == _wire(plain.pack_command(*args))
    assert _wire(fast.pack_commands([args, args])) == _wire(plain.pack_commands([args, args]))


@pytest.mark.parametrize("bad", [None, True, object()])
def test_same_refusal_as_redis_py(bad: object) -> None:
    for conn in (_hiredis_packing(Connection)(), Connection()):
        with pytest.raises(DataError):
            conn.pack_command("SET", "k", bad)
