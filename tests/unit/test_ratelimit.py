"""Token buckets, per-address connection accounting and the admin failure throttle, without
sockets (tests/integration/test_security.py drives the same objects through a real server).
Times are the caller's clock in seconds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signaling.core.ratelimit import FailureThrottle, IpLimiter, TokenBucket


def test_bucket_starts_full_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0)
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_time() == pytest.approx(0.5)
    assert not bucket.take(10.4)  # t=10.4: 0.8 token
    assert bucket.take(10.5)  # t=10.5: one token back
    assert bucket.take(100.0) and bucket.tokens == pytest.approx(2.0)  # capped at the burst


def test_bucket_costs_and_a_zero_rate() -> None:
    bucket = TokenBucket(rate=1.0, burst=5.0)
    assert bucket.take(0.0, cost=5.0)
    assert not bucket.take(0.0, cost=0.5)
    assert bucket.wait_time(cost=2.0) == pytest.approx(2.0)
    frozen = TokenBucket(rate=0.0, burst=1.0)
    assert frozen.take(0.0) and not frozen.take(1e9)
    assert frozen.wait_time() == float("inf")


@given(st.lists(st.tuples(st.floats(0, 5), st.floats(0, 3)), max_size=60))
def test_bucket_never_grants_more_than_burst_plus_rate_times_time(steps: list[tuple[float, float]]) -> None:
    bucket = TokenBucket(rate=4.0, burst=2.0)
    now, granted = 0.0, 0.0
    for dt, cost in steps:
        now += dt
        if bucket.take(now, cost):
            granted += cost
        assert 0.0 <= bucket.tokens <= bucket.burst
    assert granted <= bucket.burst + bucket.rate * now + 1e-9


def test_ip_limiter_counts_concurrent_connections_per_address() -> None:
    limiter = IpLimiter(max_concurrent=2, rate=100.0, burst=100.0)
    assert limiter.admit("10.0.0.1", 0.0) is None
    assert limiter.admit("10.0.0.1", 0.0) is None
    assert "more than 2 connections" in (limiter.admit("10.0.0.1", 0.0) or "")
    assert limiter.admit("10.0.0.2", 0.0) is None  # another address is not affected
    limiter.release("10.0.0.1")
    assert limiter.open_count("10.0.0.1") == 1
    assert limiter.admit("10.0.0.1", 0.0) is None
    limiter.release("10.0.0.9")  # never admitted: nothing goes negative
    assert limiter.open_count("10.0.0.9") == 0


def test_ip_limiter_limits_the_rate_of_new_connections() -> None:
    limiter = IpLimiter(max_concurrent=100, rate=1.0, burst=2.0)
    assert limiter.admit("a", 0.0) is None
    assert limiter.admit("a", 0.0) is None
    assert "new connections per second" in (limiter.admit("a", 0.0) or "")
    limiter.release("a")
    limiter.release("a")
    assert limiter.admit("a", 0.0) is not None  # closing does not reset the rate
    assert limiter.admit("a", 1.0) is None


def test_ip_limiter_forgets_idle_refilled_addresses_to_stay_bounded() -> None:
    limiter = IpLimiter(max_concurrent=10, rate=1.0, burst=1.0, max_tracked=3)
    for ip in ("a", "b", "c"):
        assert limiter.admit(ip, 0.0) is None
        limiter.release(ip)
    # t=0.5: nobody refilled yet, so nobody is forgotten (their rate must still hold)
    assert limiter.admit("d", 0.5) is None
    assert limiter.admit("a", 0.5) is not None
    assert limiter.tracked == 4  # d still has its connection open
    # t=10: every idle address refilled and is forgotten when a new one needs room
    assert limiter.admit("e", 10.0) is None
    assert limiter.tracked == 2  # d (open) and e


def test_failure_throttle_blocks_after_the_burst_until_a_token_refills() -> None:
    throttle = FailureThrottle(rate=0.5, burst=2.0)
    assert not throttle.blocked("x", 0.0)
    throttle.failed("x", 0.0)
    assert not throttle.blocked("x", 0.0)
    throttle.failed("x", 0.0)
    assert throttle.blocked("x", 0.0)
    assert throttle.retry_after("x") == pytest.approx(2.0)
    assert not throttle.blocked("y", 0.0)
    assert throttle.blocked("x", 1.9)
    assert not throttle.blocked("x", 2.0)
    assert throttle.retry_after("nobody") == 0.0


def test_failure_throttle_stays_bounded_even_when_every_address_is_busy() -> None:
    throttle = FailureThrottle(rate=0.001, burst=1.0, max_tracked=4)
    for i in range(20):
        throttle.failed(f"10.0.0.{i}", 0.0)
        assert throttle.tracked <= 4
    assert throttle.blocked("10.0.0.19", 0.0)
