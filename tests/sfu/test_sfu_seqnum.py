"""Sequence-number unwrapping and the duplicate window (pure, no sockets)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sfu.seqnum import DuplicateWindow, SequenceUnwrapper


def test_unwrap_continues_across_wrap() -> None:
    unwrapper = SequenceUnwrapper()
    first = unwrapper.unwrap(65534)
    assert [unwrapper.unwrap(s) - first for s in (65535, 0, 1)] == [1, 2, 3]


def test_unwrap_places_late_packets_before_the_wrap() -> None:
    unwrapper = SequenceUnwrapper()
    base = unwrapper.unwrap(65535)
    assert unwrapper.unwrap(2) == base + 3
    assert unwrapper.unwrap(65534) == base - 1  # a retransmission from before the wrap
    assert unwrapper.highest == base + 3


def test_unwrap_first_packet_slightly_old_packets_stay_positive() -> None:
    unwrapper = SequenceUnwrapper()
    start = unwrapper.unwrap(3)
    assert unwrapper.unwrap(65530) == start - 9 >= 0


@given(st.integers(0, 65535), st.lists(st.integers(1, 300), min_size=1, max_size=400))
def test_unwrap_matches_true_counter(start: int, steps: list[int]) -> None:
    unwrapper = SequenceUnwrapper()
    true = start
    base = unwrapper.unwrap(start)
    for step in steps:
        true += step
        assert unwrapper.unwrap(true % 65536) - base == true - start


def test_duplicate_window_flags_repeats_and_too_old() -> None:
    window = DuplicateWindow(8)
    assert window.check_and_add(100)
    assert not window.check_and_add(100)
    assert window.check_and_add(99)
    assert window.check_and_add(107)
    assert not window.check_and_add(99)
    assert not window.check_and_add(90)  # older than the window: too late to check or use
    assert window.check_and_add(108)
    assert window.check_and_add(101)


@given(st.lists(st.integers(0, 3000), max_size=300))
def test_duplicate_window_accepts_each_recent_number_once(numbers: list[int]) -> None:
    window = DuplicateWindow(4096)
    accepted = [n for n in numbers if window.check_and_add(n)]
    assert sorted(accepted) == sorted(set(numbers))
