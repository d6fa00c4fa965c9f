"""Keyframe request limiting and REMB aggregation (pure, time passed in)."""

from __future__ import annotations

from sfu.ratelimit import KeyframeRequestLimiter
from sfu.remb import RembPolicy


def test_one_keyframe_request_per_interval() -> None:
    limiter = KeyframeRequestLimiter(0.5)
    timeline = [0.0, 0.1, 0.49, 0.5, 0.6, 1.2]
    assert [limiter.try_acquire(t) for t in timeline] == [True, False, False, True, False, True]
    assert (limiter.allowed, limiter.suppressed) == (3, 3)


def test_zero_interval_allows_everything() -> None:
    limiter = KeyframeRequestLimiter(0.0)
    assert all(limiter.try_acquire(0.0) for _ in range(3))


def test_upstream_estimate_is_capped_by_the_slowest_subscriber() -> None:
    policy = RembPolicy(ttl=5.0)
    assert policy.on_upstream_estimate(2_000_000, now=0.0) == 2_000_000
    assert policy.on_subscriber_estimate("a", 1_500_000, now=0.1) == 1_500_000  # fell: send now
    assert policy.on_subscriber_estimate("b", 800_000, now=0.2) == 800_000
    assert policy.on_upstream_estimate(2_000_000, now=1.0) == 800_000
    assert policy.on_subscriber_estimate("b", 790_000, now=1.1) is None  # small change: wait


def test_cap_never_exceeds_the_upstream_estimate() -> None:
    policy = RembPolicy(ttl=5.0)
    policy.on_upstream_estimate(300_000, now=0.0)
    assert policy.on_subscriber_estimate("a", 5_000_000, now=0.1) is None
    assert policy.on_upstream_estimate(400_000, now=1.0) == 400_000


def test_rise_is_sent_at_most_once_a_second() -> None:
    policy = RembPolicy(ttl=5.0)
    assert policy.on_subscriber_estimate("a", 500_000, now=0.0) == 500_000
    assert policy.on_subscriber_estimate("a", 900_000, now=0.5) is None
    assert policy.on_subscriber_estimate("a", 900_000, now=1.0) == 900_000


def test_stale_and_removed_subscribers_stop_capping() -> None:
    policy = RembPolicy(ttl=5.0)
    policy.on_subscriber_estimate("a", 100_000, now=0.0)
    policy.on_subscriber_estimate("b", 900_000, now=4.0)
    assert policy.subscriber_minimum(now=4.0) == 100_000
    assert policy.subscriber_minimum(now=6.0) == 900_000
    policy.remove_subscriber("b")
    assert policy.subscriber_minimum(now=6.0) is None
    assert policy.on_upstream_estimate(1_000_000, now=6.0) == 1_000_000
