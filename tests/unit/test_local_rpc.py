"""The SFU workers' placement and link frames (signaling.server.local_rpc): pure, no process, no socket."""

from __future__ import annotations

import pytest

from signaling.cluster.registry import NodeInfo
from signaling.core.sfu_rpc import Request
from signaling.server.local_rpc import (
    EMIT,
    REQUEST,
    FrameError,
    LocalRegistry,
    emit_frame,
    frame,
    parse,
    parse_emit,
)


def worker(node_id: str, capacity: int = 10, **kwargs: object) -> NodeInfo:
    return NodeInfo(id=node_id, kind="sfu", address="pid:1", capacity=capacity, **kwargs)  # type: ignore[arg-type]


async def test_rooms_spread_over_the_workers_and_stay_where_they_are() -> None:
    registry = LocalRegistry()
    registry.add(worker("w1"))
    registry.add(worker("w2"))
    assert [await registry.place(r) for r in ("a", "b", "c", "d")] == ["w1", "w2", "w1", "w2"]
    assert await registry.place("a") == "w1"  # sticky while w1 lives
    assert registry.rooms_on("w2") == {"b", "d"}


async def test_a_removed_worker_keeps_its_placements_until_they_are_placed_again() -> None:
    registry = LocalRegistry()
    registry.add(worker("w1"))
    registry.add(worker("w2"))
    await registry.place("a")
    registry.remove("w1")
    # As in Redis: the failover watcher sees the room on a node that is not live ...
    assert await registry.placement("a") == "w1"
    assert [n.id for n in await registry.nodes("sfu")] == ["w2"]
    # ... and placing it again moves it.
    assert await registry.place("a") == "w2"
    assert await registry.release("a") == "w2"
    assert await registry.placement("a") is None


async def test_full_and_draining_workers_take_no_new_rooms() -> None:
    registry = LocalRegistry()
    registry.add(worker("w1", capacity=1))
    assert await registry.place("a") == "w1"
    assert await registry.place("b") is None  # full
    registry.add(worker("w2"))
    registry.update("w2", draining=True)
    assert await registry.place("b") is None  # the only other worker drains
    registry.update("w2", draining=False, load=3)
    assert await registry.place("b") == "w2"


async def test_a_draining_worker_hands_a_room_over_only_if_another_can_take_it() -> None:
    registry = LocalRegistry()
    registry.add(worker("w1"))
    await registry.place("a")
    registry.update("w1", draining=True)
    assert await registry.place("a", away_from="w1") == "w1"  # nowhere else: it stays
    registry.add(worker("w2"))
    assert await registry.place("a", away_from="w1") == "w2"


def test_frames_carry_the_rpc_messages_unchanged() -> None:
    request = Request(id="x:1", op="join", room="r", participant="p", args={"subscribe": True}, reply_to="n")
    tag, payload = parse(frame(REQUEST, request.encode()))
    assert tag == REQUEST
    assert Request.decode(payload) == request
    tag, payload = parse(emit_frame("p", {"type": "subscriber-offer", "sdp": "v=0\r\na=x\r\n"}))
    assert tag == EMIT
    assert parse_emit(payload) == ("p", {"type": "subscriber-offer", "sdp": "v=0\r\na=x\r\n"})


@pytest.mark.parametrize("line", [b"", b"\n", b"Zhello\n", b"\xff\xfe\n"])
def test_unknown_lines_are_refused(line: bytes) -> None:
    with pytest.raises((FrameError, UnicodeDecodeError)):
        parse(line)


@pytest.mark.parametrize("payload", ["[", "{}", '["p"]', '[1, {}]', '["p", []]'])
def test_malformed_emits_are_refused(payload: str) -> None:
    with pytest.raises(FrameError):
        parse_emit(payload)


def test_a_payload_cannot_smuggle_a_second_frame() -> None:
    with pytest.raises(ValueError, match="newline"):
        frame(REQUEST, '{"a":1}\nR{"b":2}')
