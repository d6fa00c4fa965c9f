"""Heartbeat policy and client backoff, with deterministic randomness."""

from __future__ import annotations

import random

from signaling.backoff import Backoff
from signaling.config import HeartbeatConfig
from signaling.heartbeat import HeartbeatPolicy, Liveness, rtt_from_pong


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
