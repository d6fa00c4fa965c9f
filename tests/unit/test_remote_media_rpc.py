"""The signaling <-> SFU node RPC without sockets: message encoding, the failover decision, and the
SFU node's executor (order per participant, bounded lanes, error codes) against a fake SFU."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest

from signaling.cluster.remote_media import Move, plan_move, rooms_to_check
from signaling.cluster.sfu_node import RpcExecutor
from signaling.core.sfu_rpc import (
    CODES,
    RemoteMediaError,
    Reply,
    Request,
    RpcFormatError,
    check_args,
    reply_stream,
    request_stream,
)
from signaling.runtime.tasks import TaskRegistry
from tests.cluster.fakes import FakeSfu

# -- encoding --------------------------------------------------------------------------------------


def test_stream_names_carry_the_prefix_and_the_node() -> None:
    assert request_stream("sb:", "sfu-1") == "sb:sfu-rpc:sfu-1"
    assert reply_stream("t1:", "sig-2") == "t1:sfu-reply:sig-2"


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("join", {"subscribe": False}),
        ("publish", {"sdp": "v=0"}),
        ("subscriber_answer", {"sdp": "v=0"}),
        ("add_candidate", {"target": "publisher", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}}),
        ("add_candidate", {"target": "subscriber", "candidate": None}),
        ("unpublish", {"track": "t1"}),
        ("mute", {"track": "t1", "muted": True}),
        ("set_subscription", {"track": "t1", "quality": "low"}),
        ("leave", {}),
    ],
)
def test_request_round_trips(op: Any, args: dict[str, Any]) -> None:
    request = Request(id="abc:1", op=op, room="r", participant="p", args=args, reply_to="sig-1", deadline=123.5)
    assert Request.decode(request.encode()) == request


def test_no_deadline_and_no_reply_survive_json() -> None:
    request = Request(id="abc:2", op="leave", room="r", participant="p")
    raw = request.encode()
    assert json.loads(raw)["deadline"] is None  # JSON has no infinity
    decoded = Request.decode(raw)
    assert decoded.reply_to is None
    assert math.isinf(decoded.deadline)


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        json.dumps({"id": "x", "op": "dance", "room": "r", "p": "p", "args": {}}),
        json.dumps({"id": "x", "op": "join", "room": "r", "p": "p", "args": {"subscribe": "yes"}}),
        json.dumps({"id": "x", "op": "publish", "room": "r", "p": "p", "args": {}}),
        json.dumps({"id": "x", "op": "add_candidate", "room": "r", "p": "p", "args": {"target": "both", "candidate": None}}),
        json.dumps({"id": "x", "op": "add_candidate", "room": "r", "p": "p", "args": {"target": "publisher"}}),
        json.dumps({"id": "x", "op": "mute", "room": "r", "p": "p", "args": {"track": "t"}}),
        json.dumps({"id": "x", "op": "set_subscription", "room": "r", "p": "p", "args": {"track": "t", "quality": "ultra"}}),
        json.dumps({"id": "x", "op": "set_subscription", "room": "r", "p": "p", "args": {"quality": "low"}}),
        json.dumps({"id": "x", "op": "leave", "room": "r", "p": 7, "args": {}}),
        json.dumps({"id": "x", "op": "leave", "room": "r", "p": "p", "args": {}, "reply": 3}),
        json.dumps({"id": "x", "op": "leave", "room": "r", "p": "p", "args": {}, "deadline": True}),
        json.dumps({"op": "leave", "room": "r", "p": "p", "args": {}}),
    ],
)
def test_malformed_requests_are_refused_by_name(raw: str) -> None:
    with pytest.raises(RpcFormatError):
        Request.decode(raw)


def test_check_args_rejects_an_unknown_op() -> None:
    with pytest.raises(RpcFormatError, match="unknown op"):
        check_args("explode", {})


def test_only_join_and_leave_run_after_the_caller_gave_up() -> None:
    late = 100.0
    for op, args in (("publish", {"sdp": "v=0"}), ("mute", {"track": "t", "muted": False})):
        assert Request(id="i", op=op, room="r", participant="p", args=args, deadline=99.0).expired(late)  # type: ignore[arg-type]
    for op, args in (("join", {"subscribe": True}), ("leave", {})):
        assert not Request(id="i", op=op, room="r", participant="p", args=args, deadline=99.0).expired(late)  # type: ignore[arg-type]
    assert not Request(id="i", op="publish", room="r", participant="p", args={"sdp": ""}, deadline=101.0).expired(late)


def test_replies_round_trip_and_refusals_raise_with_their_code() -> None:
    ok = Reply(id="a", ok=True, result="v=0 answer")
    assert Reply.decode(ok.encode()) == ok
    assert ok.raise_for_refusal() == "v=0 answer"
    for code in sorted(CODES):
        refused = Reply.refusal("b", code, "why")
        assert Reply.decode(refused.encode()) == refused
        with pytest.raises(RemoteMediaError) as caught:
            refused.raise_for_refusal()
        assert caught.value.code == code
        assert str(caught.value) == "why"


def test_an_unknown_refusal_code_becomes_sfu_error() -> None:
    raw = json.dumps({"id": "c", "ok": False, "code": "brand-new-code", "message": "m"})
    assert Reply.decode(raw).code == "sfu-error"
    assert Reply.refusal("c", "whatever", "m").code == "sfu-error"
    with pytest.raises(RpcFormatError):
        Reply.decode(json.dumps({"id": "c"}))


# -- the failover decision -------------------------------------------------------------------------


def test_no_move_while_the_placement_holds() -> None:
    assert plan_move("r", "sfu-a", "sfu-a", {"p1": True}) is None


def test_no_move_when_no_node_can_take_the_room() -> None:
    # Calls fail with sfu-unavailable meanwhile; the move happens once a node can take it.
    assert plan_move("r", "sfu-a", None, {"p1": True}) is None


def test_a_new_placement_moves_every_local_participant_with_its_subscribe_flag() -> None:
    move = plan_move("r", "sfu-a", "sfu-b", {"p1": True, "p2": False})
    assert move == Move("r", "sfu-a", "sfu-b", (("p1", True), ("p2", False)))


def test_a_first_placement_is_a_move_from_nowhere() -> None:
    assert plan_move("r", None, "sfu-a", {}) == Move("r", None, "sfu-a", ())
    # Participants whose join found no SFU are joined (and told to redo media) once one exists.
    assert plan_move("r", None, "sfu-a", {"p": True}) == Move("r", None, "sfu-a", (("p", True),))


def test_the_watcher_only_checks_rooms_whose_node_is_not_live() -> None:
    rooms: dict[str, str | None] = {"a": "sfu-1", "b": "sfu-2", "c": None, "d": "sfu-1"}
    assert rooms_to_check(rooms, {"sfu-1", "sfu-2"}) == ["c"]
    assert rooms_to_check(rooms, {"sfu-2"}) == ["a", "c", "d"]
    assert rooms_to_check({}, set()) == []
    # Rooms with a join to retry are looked at even when their node lives.
    assert rooms_to_check(rooms, {"sfu-1", "sfu-2"}, retry=["b"]) == ["b", "c"]
    # Rooms on a draining node are looked at too: they move while it still forwards.
    assert rooms_to_check(rooms, {"sfu-1", "sfu-2"}, draining={"sfu-1"}) == ["a", "c", "d"]


# -- the SFU node's executor -----------------------------------------------------------------------


class Harness:
    def __init__(self, *, lane_size: int = 8, now: float = 0.0) -> None:
        self.sfu = FakeSfu()
        self.tasks = TaskRegistry("test-executor")
        self.replies: dict[str, Reply] = {}
        self.changed: list[tuple[str, bool]] = []
        self.now = now
        self._arrived = asyncio.Event()
        self.executor = RpcExecutor(
            self.sfu, self._reply, tasks=self.tasks, lane_size=lane_size,
            on_rooms=lambda room, hosted: self.changed.append((room, hosted)), clock=lambda: self.now,
        )
        self._ids = 0

    async def _reply(self, request: Request, reply: Reply) -> None:
        self.replies[request.id] = reply
        self._arrived.set()

    def submit(self, op: str, participant: str, room: str = "r", deadline: float = math.inf, **args: Any) -> str:
        self._ids += 1
        request = Request(id=str(self._ids), op=op, room=room, participant=participant, args=args,  # type: ignore[arg-type]
                          reply_to="sig", deadline=deadline)
        assert self.executor.submit(request)
        return request.id

    async def reply(self, request_id: str) -> Reply:
        async with asyncio.timeout(5):
            while request_id not in self.replies:
                self._arrived.clear()
                await self._arrived.wait()
        return self.replies[request_id]

    async def idle(self) -> None:
        """Until every lane has drained (lanes end themselves when empty; the fake SFU never
        sleeps, so yielding to the loop is all they need)."""
        async with asyncio.timeout(5):
            while self.executor.lanes:
                await asyncio.sleep(0)


@pytest.fixture
async def harness() -> Any:
    h = Harness()
    yield h
    await h.tasks.close()


async def test_requests_of_one_participant_run_in_order(harness: Harness) -> None:
    harness.sfu.gates[("publish", "a")] = gate = asyncio.Event()
    ids = [
        harness.submit("join", "a", subscribe=True),
        harness.submit("publish", "a", sdp="offer"),
        harness.submit("add_candidate", "a", target="publisher", candidate=None),
        harness.submit("mute", "a", track="t", muted=True),
    ]
    # a's candidate waits behind a's publish, held at its gate; b is not held up by a.
    b = harness.submit("join", "b", subscribe=False)
    assert (await harness.reply(b)).ok
    assert ("add_candidate", "r", "a") not in harness.sfu.done
    gate.set()
    replies = [await harness.reply(i) for i in ids]
    assert all(r.ok for r in replies)
    assert replies[1].result == "answer to offer"
    assert [op for op, _, p in harness.sfu.done if p == "a"] == ["join", "publish", "add_candidate", "mute"]


async def test_refusals_keep_the_sfu_code_and_failures_become_sfu_error(harness: Harness) -> None:
    not_joined = harness.submit("publish", "a", sdp="offer")
    assert (await harness.reply(not_joined)).code == "not-joined"
    harness.submit("join", "a", subscribe=True)
    unknown = harness.submit("unpublish", "a", track="nope")
    assert (await harness.reply(unknown)).code == "unknown-track"
    crashed = harness.submit("publish", "a", sdp="boom")
    reply = await harness.reply(crashed)
    assert (reply.ok, reply.code) == (False, "sfu-error")
    assert harness.executor.refused == {"not-joined": 1, "unknown-track": 1, "sfu-error": 1}


async def test_a_full_lane_refuses_instead_of_growing() -> None:
    h = Harness(lane_size=2)
    h.sfu.gates[("join", "a")] = gate = asyncio.Event()
    try:
        h.submit("join", "a", subscribe=True)  # taken by the lane's task at once
        await asyncio.sleep(0)
        h.submit("mute", "a", track="t", muted=True)
        h.submit("mute", "a", track="t", muted=False)
        third = Request(id="x", op="leave", room="r", participant="a", reply_to="sig")
        assert not h.executor.submit(third)
        assert h.executor.refused["busy"] == 1
        # Another participant has a lane of its own.
        assert h.executor.submit(Request(id="y", op="leave", room="r", participant="b"))
        gate.set()
        await h.idle()
    finally:
        await h.tasks.close()


async def test_requests_whose_caller_gave_up_are_skipped_except_join_and_leave() -> None:
    h = Harness(now=1000.0)
    try:
        join = h.submit("join", "a", deadline=10.0, subscribe=True)
        publish = h.submit("publish", "a", deadline=10.0, sdp="late offer")
        h.submit("leave", "a", deadline=10.0)
        await h.idle()
        assert (await h.reply(join)).ok
        assert publish not in h.replies
        assert [op for op, _, _ in h.sfu.done] == ["join", "leave"]
        assert h.executor.expired == 1
    finally:
        await h.tasks.close()


async def test_hosted_rooms_follow_joins_and_leaves(harness: Harness) -> None:
    harness.submit("join", "a", room="r1", subscribe=True)
    harness.submit("join", "b", room="r1", subscribe=True)
    harness.submit("join", "c", room="r2", subscribe=True)
    await harness.idle()
    assert harness.executor.rooms == {"r1": {"a", "b"}, "r2": {"c"}}
    harness.submit("leave", "a", room="r1")
    harness.submit("leave", "c", room="r2")
    harness.submit("leave", "nobody", room="r3")  # idempotent, counts nothing
    await harness.idle()
    assert harness.executor.rooms == {"r1": {"b"}}
    assert harness.changed == [("r1", True), ("r2", True), ("r2", False)]
