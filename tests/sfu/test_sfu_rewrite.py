"""Per-subscriber sequence number / timestamp rewriting (pure, no sockets)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from sfu.rewrite import StreamRewriter

A = ("track-a", 0)
B = ("track-b", 0)


def test_first_start_uses_the_initial_values() -> None:
    rewriter = StreamRewriter(90000, initial_seq=100, initial_timestamp=5000)
    rewriter.restart(A, 70000, 123456, now=0.0)
    assert rewriter.map(A, 70000, 123456, 0.0) == (100, 5000)
    assert rewriter.map(A, 70002, 123456 + 3000, 0.1) == (102, 8000)


def test_packets_before_the_start_or_from_another_source_are_dropped() -> None:
    rewriter = StreamRewriter(90000, 0, 0)
    assert rewriter.map(A, 10, 0, 0.0) is None
    rewriter.restart(A, 10, 0, 0.0)
    assert rewriter.map(A, 9, 0, 0.0) is None
    assert rewriter.map(B, 11, 0, 0.0) is None
    rewriter.detach()
    assert rewriter.map(A, 11, 0, 0.0) is None


def test_source_switch_continues_the_output_stream() -> None:
    rewriter = StreamRewriter(90000, initial_seq=65534, initial_timestamp=0xFFFFFF00)
    rewriter.restart(A, 1000, 0, now=10.0)
    assert rewriter.map(A, 1001, 3000, 10.0) == (65535, (0xFFFFFF00 + 3000) & 0xFFFFFFFF)
    rewriter.restart(B, 5, 777, now=10.5)
    seq, ts = rewriter.map(B, 5, 777, 10.5) or (None, None)
    assert seq == 0  # continues after 65535 (wrapped), no jump back
    assert ts == (0xFFFFFF00 + 3000 + 45000) & 0xFFFFFFFF  # advanced by the 0.5 s gap


def test_restart_advances_timestamp_at_least_one_tick() -> None:
    rewriter = StreamRewriter(48000, 0, 0)
    rewriter.restart(A, 0, 100, now=1.0)
    assert rewriter.map(A, 0, 100, 1.0) == (0, 0)
    rewriter.restart(B, 0, 900, now=1.0)
    assert rewriter.map(B, 0, 900, 1.0) == (1, 1)


def test_reordered_packets_keep_their_relative_numbers() -> None:
    rewriter = StreamRewriter(90000, 10, 0)
    rewriter.restart(A, 100, 0, 0.0)
    assert rewriter.map(A, 103, 0, 0.0) == (13, 0)
    assert rewriter.map(A, 101, 0, 0.0) == (11, 0)


@given(
    st.integers(0, 65535),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 50)), min_size=1, max_size=20),
)
def test_output_is_strictly_increasing_across_any_switches(
    initial: int, segments: list[tuple[int, int]]
) -> None:
    rewriter = StreamRewriter(90000, initial, 0)
    outputs = []
    now = 0.0
    for number, (start, length) in enumerate(segments):
        source = ("t", number)
        rewriter.restart(source, start, start * 7, now)
        for ext in range(start, start + length):
            mapped = rewriter.map(source, ext, ext * 7, now)
            assert mapped is not None
            outputs.append(mapped[0])
        now += 0.01
    unwrapped = [outputs[0]]
    for value in outputs[1:]:
        step = (value - unwrapped[-1]) % 65536
        unwrapped.append(unwrapped[-1] + step)
    assert all(b - a == 1 for a, b in itertools.pairwise(unwrapped))
