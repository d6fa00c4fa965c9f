"""The strict JSON of the wire (RFC 8259, valid UTF-8) and the accept-time guards. No sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.core import protocol
from signaling.core.heartbeat import rtt_from_pong
from signaling.core.protocol import MAX_DEPTH, ProtocolError, StrictJSONError, encode, loads_strict
from signaling.core.ratelimit import FailureThrottle
from signaling.core.session import Session
from signaling.server.accept import AcceptThrottle, AddressCounter
from signaling.server.connection import close_reason


@pytest.mark.parametrize("text", [
    "NaN", "Infinity", "-Infinity", "[NaN]", '{"t":-Infinity}', "1e400", "-1e400", "1" * 22, "-" + "1" * 22,
    '"\\ud800"', '"\\udfff"', '"a\\udbffb"', '{"\\ud800":1}', '["\\uDC00"]', '"\\ud800\\ud800"',
    "[" * 2000 + "]" * 2000, "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), '{"a":' * 40 + "1" + "}" * 40,
    "x\ud800",  # a str that is not valid Unicode (only reachable from inside the process)
])
def test_loads_strict_refuses(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - StrictJSONError and JSONDecodeError alike
        loads_strict(text)


@pytest.mark.parametrize(("text", "value"), [
    ('"\\ud83d\\ude00"', "\U0001f600"), ('"\\\\ud800"', "\\ud800"), ("1" * 21, int("1" * 21)), ("1e308", 1e308),
    ("[" * MAX_DEPTH + "]" * MAX_DEPTH, json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)), ('"Zoë 🎉"', "Zoë 🎉"),
    ('"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["', "[" * 41),  # brackets inside a string are not nesting
])
def test_loads_strict_accepts(text: str, value: object) -> None:
    assert loads_strict(text) == value


def test_parse_names_the_code() -> None:
    for frame in ('{"type":"pong","t":NaN}', '{"type":"join","room":"r","name":"\\ud800"}'):
        with pytest.raises(ProtocolError) as info:
            protocol.parse(frame, max_bytes=10_000, max_signal_bytes=1000)
        assert info.value.error.code == "bad-json"
    for name in ("a\x00", "a\u202eb", "\u2066", "a\nb", "\x9b"):
        with pytest.raises(ProtocolError) as info:
            protocol.parse(json.dumps({"type": "join", "room": "r", "name": name}), max_bytes=10_000, max_signal_bytes=1000)
        assert info.value.error.code == "bad-message", name


@pytest.mark.parametrize("value", [math.nan, math.inf, {"x": [-math.inf]}, "\ud800", {"\udc00": 1}])
def test_encode_refuses_what_the_wire_cannot_carry(value: object) -> None:
    with pytest.raises(StrictJSONError):
        encode(value)


def test_a_message_that_cannot_be_encoded_is_never_stamped() -> None:
    session = Session(room="r", name="n", max_messages=10, max_bytes=10_000)
    with pytest.raises(StrictJSONError):
        session.stamp({"type": "signal", "data": math.nan})
    assert session.last_seq == 0 and session.unacked == 0
    assert session.stamp({"type": "signal", "data": 1}).seq == 1


@settings(max_examples=300)
@given(st.recursive(st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=12))
def test_what_encode_writes_loads_strict_reads(value: object) -> None:
    try:
        text = encode(value)
    except StrictJSONError:
        return  # a lone surrogate drawn by st.text(): refused on the way out, as it must be
    assert loads_strict(text, max_depth=10_000) == value


def test_resume_token_that_is_not_unicode_is_just_wrong() -> None:
    session = Session(room="r", name="n", max_messages=10, max_bytes=10_000)
    assert session.verify_token("\ud800") is False


def test_rtt_from_a_nan_pong_is_none() -> None:
    assert rtt_from_pong(math.nan, 1000.0, 20_000.0) is None
    assert rtt_from_pong(900.0, 1000.0, 20_000.0) == pytest.approx(0.1)


def test_close_reason_is_short_valid_utf8() -> None:
    assert close_reason("é" * 100) == ("é" * 60).encode()
    assert close_reason("x\ud800y") == b"x?y"
    assert len(close_reason("🎉" * 100)) <= 120
    (close_reason("🎉" * 100)).decode("utf-8")


def test_address_counter() -> None:
    counter = AddressCounter(2)
    assert counter.open("a") and counter.open("a") and not counter.open("a")
    assert counter.open("b")
    counter.close("a")
    assert counter.open("a")
    assert counter.refused == 1 and counter.total == 3


def test_failure_throttle_blocks_after_the_burst_and_refills() -> None:
    throttle = FailureThrottle(rate=1.0, burst=3)
    assert not throttle.blocked("a", 0.0)
    for _ in range(3):
        throttle.failed("a", 0.0)
    assert throttle.blocked("a", 0.0) and not throttle.blocked("b", 0.0)
    assert throttle.retry_after("a") == pytest.approx(1.0)
    assert not throttle.blocked("a", 1.0)


def test_accept_throttle_reports_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        seen: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _loop, context: seen.append(context))
        throttle = AcceptThrottle(loop, interval=3600)
        throttle.install()
        with caplog.at_level(logging.WARNING, logger="signaling.server.accept"):
            for _ in range(500):
                loop.call_exception_handler({"message": AcceptThrottle.MESSAGE, "exception": OSError(24, "Too many open files")})
            loop.call_exception_handler({"message": "something else"})
        assert len([r for r in caplog.records if r.name == "signaling.server.accept"]) == 1
        assert [c["message"] for c in seen] == ["something else"]  # others go to the previous handler
        throttle.uninstall()
    finally:
        loop.close()
