"""The session's seq/ack/replay/cseq state, without sockets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signaling.core.errors import ResumeRefusal
from signaling.core.session import (
    AckError,
    ReplayOverflow,
    ResumeRefused,
    Session,
    SessionState,
    Stamped,
)


def make(max_messages: int = 100, max_bytes: int = 100_000) -> Session:
    return Session(room="r", name="n", max_messages=max_messages, max_bytes=max_bytes)


def seqs(frames: list) -> list[int]:
    return [json.loads(f.frame)["seq"] for f in frames]


def test_seq_starts_at_one_and_increases() -> None:
    s = make()
    assert [s.stamp({"type": "x"}).seq for _ in range(3)] == [1, 2, 3]
    assert s.last_seq == 3


def test_stamped_frame_carries_seq_and_fields() -> None:
    s = make()
    frame = s.stamp({"type": "signal", "from": "p", "data": {"a": 1}}).frame
    assert json.loads(frame) == {"type": "signal", "from": "p", "data": {"a": 1}, "seq": 1}


def test_cumulative_ack_frees_buffer() -> None:
    s = make()
    for _ in range(5):
        s.stamp({"type": "x"})
    assert s.ack(3) == 3
    assert s.unacked == 2
    assert s.ack(2) == 0  # stale ack is harmless
    assert s.ack(5) == 2
    assert s.unacked == 0 and s.unacked_bytes == 0


def test_ack_beyond_last_seq_is_an_error() -> None:
    s = make()
    s.stamp({"type": "x"})
    with pytest.raises(AckError):
        s.ack(2)


def test_resume_replays_exactly_after_last_seq() -> None:
    s = make()
    for _ in range(6):
        s.stamp({"type": "x"})
    s.ack(2)
    assert seqs(s.resume(s.token, 4)) == [5, 6]
    # last_seq acknowledged everything up to 4
    assert s.acked_seq == 4 and s.unacked == 2


def test_resume_with_nothing_missed_replays_nothing() -> None:
    s = make()
    s.stamp({"type": "x"})
    assert s.resume(s.token, 1) == []


@pytest.mark.parametrize(
    ("token_ok", "last_seq", "why", "reason"),
    [
        (False, 3, "bad resume token", ResumeRefusal.BAD_TOKEN),
        (True, 9, "beyond", ResumeRefusal.AHEAD),
        (True, 0, "below", ResumeRefusal.BEHIND),
    ],
)
def test_resume_refused(token_ok: bool, last_seq: int, why: str, reason: ResumeRefusal) -> None:
    s = make()
    for _ in range(5):
        s.stamp({"type": "x"})
    s.ack(2)
    with pytest.raises(ResumeRefused, match=why) as refused:
        s.resume(s.token if token_ok else "wrong", last_seq)
    assert refused.value.reason is reason


def test_resume_of_ended_session_refused() -> None:
    s = make()
    s.state = SessionState.ENDED
    with pytest.raises(ResumeRefused) as refused:
        s.resume(s.token, 0)
    assert refused.value.reason is ResumeRefusal.ENDED


def _restore(frames: list[Stamped], max_messages: int = 10) -> Session:
    return Session.restore(
        session_id="s_1", peer_id="p_1", room="r", name="n", token="t", acked_seq=2, last_cseq=0,
        frames=frames, max_messages=max_messages, max_bytes=10_000,
    )


def test_restore_refuses_a_replay_with_a_hole() -> None:
    with pytest.raises(ResumeRefused) as refused:
        _restore([Stamped(3, "a"), Stamped(5, "c")])
    assert refused.value.reason is ResumeRefusal.REPLAY_INCOMPLETE


def test_restore_refuses_a_replay_beyond_the_bounds() -> None:
    with pytest.raises(ResumeRefused) as refused:
        _restore([Stamped(3, "a"), Stamped(4, "b")], max_messages=1)
    assert refused.value.reason is ResumeRefusal.REPLAY_OVERFLOW


def test_restore_keeps_a_consecutive_replay() -> None:
    s = _restore([Stamped(3, "a"), Stamped(4, "b")])
    assert (s.acked_seq, s.last_seq) == (2, 4)
    assert [f.seq for f in s.pending()] == [3, 4]


def test_overflow_by_count_stamps_nothing() -> None:
    s = make(max_messages=2)
    s.stamp({"type": "x"})
    s.stamp({"type": "x"})
    with pytest.raises(ReplayOverflow):
        s.stamp({"type": "x"})
    assert s.last_seq == 2
    s.ack(1)
    assert s.stamp({"type": "x"}).seq == 3


def test_overflow_by_bytes() -> None:
    s = make(max_bytes=200)
    s.stamp({"type": "x", "data": "a" * 100})
    with pytest.raises(ReplayOverflow):
        s.stamp({"type": "x", "data": "b" * 100})


def test_cseq_deduplication() -> None:
    s = make()
    assert s.accept_cseq(1) and s.accept_cseq(2)
    assert not s.accept_cseq(2)
    assert not s.accept_cseq(1)
    assert s.accept_cseq(5)
    assert s.last_cseq == 5


def test_retracted_cseq_is_accepted_again() -> None:
    s = make()
    assert s.accept_cseq(1)
    assert s.accept_cseq(2)
    s.retract_cseq(2, previous=1)
    assert s.last_cseq == 1
    assert s.accept_cseq(2)  # the resend after a resume is not a duplicate
    s.retract_cseq(1, previous=0)  # not the latest: nothing to retract
    assert s.last_cseq == 2


def test_tokens_and_ids_are_unique() -> None:
    sessions = [make() for _ in range(50)]
    assert len({s.token for s in sessions}) == 50
    assert len({s.id for s in sessions}) == 50
    assert len({s.peer_id for s in sessions}) == 50
    assert all(len(s.token) >= 40 for s in sessions)


@given(st.lists(st.one_of(st.just("send"), st.integers(min_value=0, max_value=40)), max_size=80), st.integers(0, 40))
def test_any_ack_history_then_resume_replays_a_suffix_in_order(ops: list, resume_at: int) -> None:
    """Whatever the acks, a resume returns exactly the stamped messages after last_seq."""
    s = make(max_messages=1000)
    for op in ops:
        if op == "send":
            s.stamp({"type": "x"})
        elif op <= s.last_seq:
            s.ack(op)
    if s.acked_seq <= resume_at <= s.last_seq:
        assert seqs(s.resume(s.token, resume_at)) == list(range(resume_at + 1, s.last_seq + 1))
    else:
        with pytest.raises(ResumeRefused):
            s.resume(s.token, resume_at)
