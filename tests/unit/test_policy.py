"""signaling.core.policy: what a session may send, decided without sockets or a clock of its own."""

from __future__ import annotations

from signaling.core.codes import Err
from signaling.core.config import SecurityConfig
from signaling.core.policy import Allowance, refusal
from signaling.core.protocol import Candidate, Data, Publish, Sequenced, Signal

ALL = frozenset({"signal", "data", "publish", "subscribe"})
LIMITS = SecurityConfig(max_candidates_per_session=2, data_rate=1.0, data_burst=2.0)


def check(message: Sequenced, allowance: Allowance | None = None, *, grants: frozenset[str] = ALL, now: float = 0.0) -> Err | None:
    error = refusal(message, grants=grants, peer_id="me", allowance=allowance or Allowance(), limits=LIMITS, now=now)
    return None if error is None else error.error


def test_a_message_needs_its_grant() -> None:
    assert check(Signal("you", {}, 1), grants=frozenset({"publish"})) is Err.FORBIDDEN
    assert check(Signal("you", {}, 1)) is None
    # data is peer messaging: the signal grant allows it too.
    assert check(Data(1, "chat", "hi"), grants=frozenset({"signal"})) is None


def test_sdp_and_candidates_are_checked_before_the_sfu_sees_them() -> None:
    assert check(Publish(1, "not sdp")) is Err.BAD_SDP
    assert check(Candidate(1, "publisher", {"candidate": "candidate:garbage"})) is Err.BAD_SDP


def test_candidates_per_session_are_bounded() -> None:
    allowance = Allowance()
    end_of_candidates = Candidate(1, "publisher", None)
    assert [check(end_of_candidates, allowance) for _ in range(3)] == [None, None, Err.LIMIT_EXCEEDED]


def test_data_has_its_own_rate_and_is_never_sent_to_oneself() -> None:
    allowance = Allowance()
    assert [check(Data(i, "t", i), allowance, now=0.0) for i in range(3)] == [None, None, Err.RATE_LIMITED]
    error = refusal(Data(4, "t", 4), grants=ALL, peer_id="me", allowance=allowance, limits=LIMITS, now=0.0)
    assert error is not None and error.retry_after_ms is not None and error.retry_after_ms > 0
    assert check(Data(5, "t", 5), allowance, now=10.0) is None  # refilled
    assert check(Data(6, "t", 6, to=("me",)), allowance, now=10.0) is Err.SELF_TARGET
