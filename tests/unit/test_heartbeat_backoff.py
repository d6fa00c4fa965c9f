"""Heartbeat policy and client backoff, with deterministic randomness."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from signaling.core.backoff import Backoff
from signaling.core.config import HeartbeatConfig
from signaling.core.heartbeat import AdaptiveTimeout, HeartbeatPolicy, Liveness, rtt_from_pong


def test_first_ping_is_spread_over_the_first_interval() -> None:
    policy = HeartbeatPolicy(HeartbeatConfig(interval=10, timeout=20), random.Random(1))
    delays = [policy.first_delay() for _ in range(1000)]
    assert 0 <= min(delays) < 1 and 9 < max(delays) <= 10


def test_intervals_are_jittered_within_bounds() -> None:
    policy = HeartbeatPolicy(HeartbeatConfig(interval=10, timeout=20, jitter=0.1), random.Random(2))
    delays = [policy.next_delay() for _ in range(1000)]
    assert 9.0 <= min(delays) < 9.2 and 10.8 < max(delays) <= 11.0


def test_liveness_dies_after_timeout_of_silence() -> None:
    live = Liveness(timeout=20, now=100)
    assert not live.is_dead(119.9)
    live.seen(110)
    assert not live.is_dead(129.9)
    assert live.is_dead(130)


def test_a_stalled_reader_never_blames_the_client() -> None:
    live = Liveness(timeout=20, now=0)
    live.stall()
    assert live.deadline() is None
    assert not live.is_dead(1000)
    live.unstall(now=1000)
    assert not live.is_dead(1019) and live.is_dead(1020)


def test_rtt_from_pong() -> None:
    assert rtt_from_pong(1000, 1012, 20000) == 0.012
    assert rtt_from_pong(1000, 900, 20000) is None  # from the future: forged
    assert rtt_from_pong(0, 30000, 20000) is None  # older than the timeout: stale


def test_backoff_first_retry_immediate_then_full_jitter_capped() -> None:
    b = Backoff(base=0.25, cap=10, rng=random.Random(3))
    assert b.next_delay() == 0.0
    ceilings = [0.25, 0.5, 1, 2, 4, 8, 10, 10]
    for ceiling in ceilings:
        assert 0 <= b.next_delay() <= ceiling


def test_backoff_full_jitter_uses_the_whole_range() -> None:
    samples = []
    for seed in range(300):
        b = Backoff(base=1, cap=100, rng=random.Random(seed))
        b.next_delay()
        b.next_delay()
        samples.append(b.next_delay())  # ceiling 2
    assert min(samples) < 0.1 and max(samples) > 1.9


def test_backoff_resets_only_after_a_stable_connection() -> None:
    b = Backoff(stable_after=10, rng=random.Random(4))
    b.next_delay()
    b.next_delay()
    b.connected(now=0)
    b.disconnected(now=5)  # flapping: keep backing off
    assert b.attempt == 2
    b.connected(now=5)
    b.disconnected(now=20)
    assert b.attempt == 0
    assert b.next_delay() == 0.0


# -- adaptive silence timeout ------------------------------------------------------------------

ADAPTIVE = HeartbeatConfig(interval=10, timeout=20, jitter=0.1, rtt_factor=4, max_timeout=40)


def test_adaptive_timeout_starts_at_the_configured_timeout_and_never_goes_below() -> None:
    adaptive = AdaptiveTimeout(ADAPTIVE)
    assert adaptive.timeout == 20
    assert adaptive.rtt_p99() is None
    for _ in range(10):
        adaptive.observe(0.001)  # a LAN: 11 s + 4 ms is less than the floor
    assert adaptive.timeout == 20


def test_adaptive_timeout_grows_with_rtt_and_its_jitter() -> None:
    adaptive = AdaptiveTimeout(ADAPTIVE)
    # 400 ms RTT, +-200 ms: p99 0.6, jitter 0.4 -> 11 + 4 x 1.0 = 15: still the floor.
    for rtt in [0.2, 0.6] * 8:
        adaptive.observe(rtt)
    assert adaptive.rtt_p99() == 0.6
    assert adaptive.rtt_jitter() == pytest.approx(0.4)
    assert adaptive.timeout == 20
    # A satellite link with bufferbloat: 2 s RTT, +-0.5 s -> 11 + 4 x (2.5 + 1.0) = 25.
    for rtt in [1.5, 2.5] * 16:
        adaptive.observe(rtt)
    assert adaptive.timeout == pytest.approx(25.0)


def test_adaptive_timeout_is_capped_and_forgets_old_samples() -> None:
    adaptive = AdaptiveTimeout(ADAPTIVE, window=8)
    for _ in range(8):
        adaptive.observe(9.0)
    assert adaptive.timeout == 40  # 11 + 36 = 47, capped: a dead link is found within 40 s
    for _ in range(8):
        adaptive.observe(0.01)
    assert adaptive.timeout == 20  # the window moved on: back to the floor


def test_adaptive_timeout_ignores_nonsense_samples() -> None:
    adaptive = AdaptiveTimeout(ADAPTIVE)
    for bad in (float("nan"), float("inf"), -1.0):
        assert adaptive.observe(bad) == 20
    assert adaptive.rtt_p99() is None


def test_a_cap_below_the_timeout_means_no_adaptation() -> None:
    adaptive = AdaptiveTimeout(HeartbeatConfig(interval=10, timeout=20, max_timeout=5))
    assert adaptive.observe(9.0) == 20
    assert adaptive.bound == 20


def test_adaptive_timeout_statistics_match_their_definition_over_a_sliding_window() -> None:
    """The incremental p99 and jitter equal the textbook computation on the current window."""
    rng = random.Random(11)
    for window in (1, 2, 8, 32, 150):
        adaptive = AdaptiveTimeout(ADAPTIVE, window=window)
        kept: list[float] = []
        for _ in range(400):
            rtt = rng.choice([rng.uniform(0, 0.05), rng.uniform(0, 2.0), float("nan")])
            adaptive.observe(rtt)
            if math.isfinite(rtt):
                kept = [*kept, rtt][-window:]
            ordered = sorted(kept)
            assert adaptive.rtt_p99() == (ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if kept else None)
            expected = (
                sum(abs(b - a) for a, b in itertools.pairwise(kept)) / (len(kept) - 1) if len(kept) > 1 else 0.0
            )
            assert adaptive.rtt_jitter() == pytest.approx(expected, abs=1e-12)
