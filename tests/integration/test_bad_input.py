"""Every kind of bad input gets its error code, and no other session notices anything."""

from __future__ import annotations

import pytest

from signaling.core.config import LimitsConfig
from tests.conftest import UNIT, RunningServer, ServerFactory, make_config
from tests.raw import Raw


@pytest.fixture
async def pair(server: RunningServer):  # type: ignore[no-untyped-def]
    alice = await Raw.joined(server.url, "room", "alice")
    bob = await Raw.joined(server.url, "room", "bob")
    assert (await alice.expect("peer-joined"))["peer"]["id"] == bob.peer
    yield alice, bob
    await alice.close()
    await bob.close()


async def assert_still_works(alice: Raw, bob: Raw) -> None:
    """The relay between two sessions still works and nothing stray arrived."""
    await alice.send({"type": "signal", "to": bob.peer, "data": {"probe": 1}, "cseq": 1000})
    got = await bob.expect("signal")
    assert got["data"] == {"probe": 1} and got["from"] == alice.peer


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad-json"),
        ('{"type":"launch-missiles"}', "unknown-type"),
        ('{"type":"signal","to":"x"}', "bad-message"),
        ('{"type":"signal","to":"x","data":{},"cseq":1,"extra":true}', "bad-message"),
        ('{"type":"join","room":"other"}', "already-joined"),
    ],
)
async def test_bad_frame_after_join(pair: tuple[Raw, Raw], frame: str, code: str) -> None:
    alice, bob = pair
    await alice.send_raw(frame)
    err = await alice.expect("error")
    assert err["code"] == code
    assert isinstance(err["seq"], int)  # joined: errors are part of the stream
    await assert_still_works(alice, bob)
    await assert_still_works(bob, alice)


async def test_binary_frame(pair: tuple[Raw, Raw]) -> None:
    alice, bob = pair
    await alice.ws.send_bytes(b"\x00\x01")
    assert (await alice.expect("error"))["code"] == "binary-frame"
    await assert_still_works(alice, bob)


async def test_oversized_frame_is_refused_and_stream_continues(pair: tuple[Raw, Raw]) -> None:
    alice, bob = pair
    await alice.send_raw('{"type":"signal","to":"' + bob.peer + '","cseq":1,"data":"' + "x" * 70_000 + '"}')
    assert (await alice.expect("error"))["code"] == "too-large"
    await assert_still_works(alice, bob)


async def test_frame_beyond_hard_limit_closes_1009_only_that_socket(start_server: ServerFactory) -> None:
    server = await start_server(make_config(limits=LimitsConfig(hard_max_message_bytes=100_000, close_timeout=20 * UNIT)))
    alice = await Raw.joined(server.url, "room", "alice")
    bob = await Raw.joined(server.url, "room", "bob")
    await alice.expect("peer-joined")
    await alice.send_raw("x" * 200_000)
    assert await alice.closed() == 1009
    bob2 = await Raw.joined(server.url, "room", "carol")
    await bob.expect("peer-joined")
    await assert_still_works(bob2, bob)
    await alice.close()
    await bob.close()
    await bob2.close()


async def test_signal_data_too_large(pair: tuple[Raw, Raw]) -> None:
    alice, bob = pair
    await alice.send({"type": "signal", "to": bob.peer, "cseq": 1, "data": "y" * 40_000})
    err = await alice.expect("error")
    assert err["code"] == "too-large" and err["cseq"] == 1
    await assert_still_works(alice, bob)


async def test_signal_to_self(pair: tuple[Raw, Raw]) -> None:
    alice, bob = pair
    await alice.send({"type": "signal", "to": alice.peer, "cseq": 1, "data": {}})
    err = await alice.expect("error")
    assert err["code"] == "self-target" and err["cseq"] == 1
    await assert_still_works(alice, bob)


async def test_signal_to_unknown_peer(pair: tuple[Raw, Raw]) -> None:
    alice, bob = pair
    await alice.send({"type": "signal", "to": "p_nobody", "cseq": 1, "data": {}})
    assert (await alice.expect("error"))["code"] == "unknown-peer"
    await assert_still_works(alice, bob)


async def test_signal_to_peer_of_another_room_looks_like_no_peer(server: RunningServer, pair: tuple[Raw, Raw]) -> None:
    alice, bob = pair
    mallory = await Raw.joined(server.url, "elsewhere", "mallory")
    await mallory.send({"type": "signal", "to": alice.peer, "cseq": 1, "data": {"evil": True}})
    err = await mallory.expect("error")
    assert err["code"] == "unknown-peer"
    assert err["message"] == f"no peer {alice.peer} in this room"
    await assert_still_works(alice, bob)  # alice received nothing from mallory
    await mallory.close()


async def test_messages_before_join(server: RunningServer) -> None:
    raw = await Raw.connect(server.url)
    await raw.send({"type": "signal", "to": "p", "data": {}, "cseq": 1})
    err = await raw.expect("error")
    assert err["code"] == "not-joined" and "seq" not in err
    await raw.send({"type": "join", "room": "r"})
    assert (await raw.expect("welcome"))["seq"] == 1
    await raw.close()


async def test_join_timeout_closes_4010(start_server: ServerFactory) -> None:
    server = await start_server(make_config(limits=LimitsConfig(join_timeout=4 * UNIT, close_timeout=20 * UNIT)))
    raw = await Raw.connect(server.url)
    assert (await raw.expect("error"))["code"] == "join-timeout"
    assert await raw.closed() == 4010
    await raw.close()


async def test_too_many_errors_closes_4010(start_server: ServerFactory) -> None:
    server = await start_server(make_config(limits=LimitsConfig(max_errors=5, close_timeout=20 * UNIT)))
    raw = await Raw.joined(server.url)
    for _ in range(5):
        await raw.send_raw("garbage")
    codes = [(await raw.expect("error"))["code"] for _ in range(6)]
    assert codes == ["bad-json"] * 5 + ["too-many-errors"]
    assert await raw.closed() == 4010
    await raw.close()


async def test_ack_beyond_sent_is_an_error_not_a_crash(pair: tuple[Raw, Raw]) -> None:
    alice, bob = pair
    await alice.send({"type": "ack", "seq": 10_000})
    assert (await alice.expect("error"))["code"] == "bad-message"
    await assert_still_works(alice, bob)


async def test_seq_starts_at_one_and_is_contiguous(pair: tuple[Raw, Raw]) -> None:
    alice, bob = pair
    assert alice.welcome["seq"] == 1
    for i in range(5):
        await bob.send({"type": "signal", "to": alice.peer, "data": i, "cseq": i + 1})
    seqs = [(await alice.expect("signal"))["seq"] for _ in range(5)]
    assert seqs == [3, 4, 5, 6, 7]  # 2 was peer-joined
