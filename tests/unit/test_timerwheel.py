"""The heartbeat timer wheel as pure logic: no loop, no sockets; the clock is a number."""

from __future__ import annotations

import random

import pytest

from signaling.core import protocol
from signaling.core.protocol import Pong, parse
from signaling.core.timerwheel import TimerWheel

RES = 0.05


def test_a_key_is_never_due_early_and_at_most_one_bucket_late() -> None:
    rng = random.Random(7)
    wheel: TimerWheel[int] = TimerWheel(RES)
    deadlines = {k: rng.uniform(0.0, 10.0) for k in range(500)}
    for key, when in deadlines.items():
        wheel.schedule(key, when)
    fired: dict[int, float] = {}
    now = 0.0
    while len(wheel):
        now += rng.uniform(0.001, 0.03)  # a driver waking at irregular moments
        for key in wheel.pop_due(now):
            fired[key] = now
    assert fired.keys() == deadlines.keys()
    for key, when in deadlines.items():
        assert when <= fired[key] < when + RES + 0.03, key  # + the driver's own step


def test_next_due_is_the_earliest_bucket_and_none_when_empty() -> None:
    wheel: TimerWheel[str] = TimerWheel(RES)
    assert wheel.next_due() is None
    wheel.schedule("late", 3.0)
    wheel.schedule("early", 1.01)
    due = wheel.next_due()
    assert due is not None and 1.01 <= due < 1.01 + RES
    assert wheel.pop_due(due - RES / 2) == []
    assert wheel.pop_due(due) == ["early"]
    assert wheel.next_due() == pytest.approx(3.0)
    wheel.cancel("late")
    assert wheel.next_due() is None and len(wheel) == 0


def test_rescheduling_moves_a_key_and_cancel_forgets_it() -> None:
    wheel: TimerWheel[str] = TimerWheel(RES)
    wheel.schedule("a", 1.0)
    wheel.schedule("a", 5.0)  # e.g. a frame arrived: the silence deadline moved
    assert len(wheel) == 1
    assert wheel.pop_due(2.0) == []
    assert wheel.pop_due(5.0) == ["a"]
    wheel.schedule("b", 6.0)
    assert wheel.cancel("b") and not wheel.cancel("b")
    assert "b" not in wheel
    assert wheel.pop_due(100.0) == []


def test_a_key_rescheduled_into_the_past_fires_in_the_next_bucket_not_in_the_same_pop() -> None:
    """A driver that reschedules what it pops (a tick whose deadline is already due) makes
    progress: the key comes back one bucket later, never in the pop that returned it."""
    wheel: TimerWheel[str] = TimerWheel(RES)
    wheel.schedule("a", 1.0)
    assert wheel.pop_due(1.0) == ["a"]
    wheel.schedule("a", 0.5)  # already past
    assert wheel.pop_due(1.0) == []
    due = wheel.next_due()
    assert due is not None and 1.0 < due <= 1.0 + RES + 1e-9
    assert wheel.pop_due(due) == ["a"]


def test_keys_of_one_bucket_come_out_in_insertion_order() -> None:
    wheel: TimerWheel[int] = TimerWheel(1.0)
    for key in (3, 1, 2):
        wheel.schedule(key, 0.5)
    assert wheel.pop_due(1.0) == [3, 1, 2]


def test_a_bad_resolution_is_refused() -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="resolution"):
            TimerWheel(bad)


# -- the per-ping fast paths: the same frames and messages as the generic ones ---------------------


@pytest.mark.parametrize(
    ("t", "cseq", "rtt", "timeout"),
    [(1234.567, 0, None, None), (0.001, 17, 12.34, 20000), (98765432.1, 2**40, 0.0, 1), (5.0, 3, None, 9000)],
)
def test_ping_frame_is_the_encoded_ping(t: float, cseq: int, rtt: float | None, timeout: int | None) -> None:
    assert protocol.ping_frame(t, cseq, rtt, timeout) == protocol.encode(protocol.ping(t, cseq, rtt, timeout))


def test_ping_frame_refuses_what_encode_refuses() -> None:
    with pytest.raises(protocol.StrictJSONError):
        protocol.ping_frame(float("nan"), 0)


@pytest.mark.parametrize(
    "frame",
    ['{"type":"pong","t":1234.567}', '{"type": "pong", "t": 0}', '{ "type" : "pong" ,\n"t":-5.25 }',
     '{"type":"pong","t":12345678901234567}'],
)
def test_pong_fast_path_agrees_with_the_full_parse(frame: str) -> None:
    fast = protocol.parse_pong(frame)
    full = parse(frame, max_bytes=65536, max_signal_bytes=65536)
    if fast is not None:
        assert fast == full
    assert isinstance(full, Pong)


@pytest.mark.parametrize(
    "frame",
    ['{"type":"pong","t":1e999}', '{"type":"pong","t":NaN}', '{"t":1,"type":"pong"}', '{"type":"pong","t":1,"x":2}',
     '{"type":"pong","t":"1"}', '{"type":"pong","t":01}', '{"type":"pong","t":1}x', '{"type":"pong"\u00a0,"t":1}',
     '{"type":"ping","t":1}'],
)
def test_anything_but_a_plain_pong_takes_the_full_parse(frame: str) -> None:
    assert protocol.parse_pong(frame) is None
