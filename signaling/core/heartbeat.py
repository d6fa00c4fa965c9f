"""Heartbeat policy: when to ping, when a silent client is dead, and the RTT a pong proves. No I/O.

The server pings every ``interval`` (±``jitter``; after a probe ping right at the join, which
yields the first RTT sample, the schedule starts at a random point of the first interval so that
clients reconnecting together do not ping together). The silence timeout adapts to the RTT
(:class:`AdaptiveTimeout`). Any inbound frame proves
the client alive. Silence is only counted while our own reader is able to read: if our side is
the bottleneck (the reader is stalled behind a full inbound queue), the client is not blamed.
"""

from __future__ import annotations

import math
import random
from collections import deque

from signaling.core.config import HeartbeatConfig


class HeartbeatPolicy:
    """Ping schedule for one connection."""

    def __init__(self, config: HeartbeatConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()

    def first_delay(self) -> float:
        return self._rng.uniform(0.0, self.config.interval)

    def next_delay(self) -> float:
        j = self.config.jitter
        return self.config.interval * self._rng.uniform(1.0 - j, 1.0 + j)


class AdaptiveTimeout:
    """The silence timeout of one session, adapted to the RTT its pongs measure.

    A live client is silent at most from one pong to the next: the longest ping interval plus
    how much later the next pong can come than the last one, which grows with the RTT and its
    variation (on TCP a lost segment also stalls the stream for about an RTT or more). So the
    timeout is ``max(timeout, interval x (1 + jitter) + rtt_factor x (RTT p99 + RTT jitter))``,
    capped at ``max(timeout, max_timeout)``: a dead link is still detected within that bound.
    RTT jitter is the mean absolute difference of consecutive samples (RFC 3550 section 6.4.1
    smooths the same quantity). The window of samples is bounded.
    """

    def __init__(self, config: HeartbeatConfig, window: int = 32) -> None:
        self.config = config
        self._samples: deque[float] = deque(maxlen=window)
        #: |difference| of each pair of consecutive samples in the window (kept as samples come:
        #: recomputing them on every pong was ~15 % of an idle server's CPU, docs/benchmarks.md).
        self._diffs: deque[float] = deque(maxlen=max(1, window - 1))
        self._timeout = config.timeout

    @property
    def timeout(self) -> float:
        """The current silence timeout (seconds)."""
        return self._timeout

    @property
    def bound(self) -> float:
        return max(self.config.timeout, self.config.max_timeout)

    def rtt_p99(self) -> float | None:
        samples = self._samples
        if not samples:
            return None
        rank = math.ceil(0.99 * len(samples)) - 1
        if rank >= len(samples) - 1:
            return max(samples)  # fewer than 100 samples: the 99th percentile is the largest
        return sorted(samples)[max(0, rank)]

    def rtt_jitter(self) -> float:
        diffs = self._diffs
        if len(self._samples) < 2:
            return 0.0
        return sum(diffs) / len(diffs)

    def observe(self, rtt: float) -> float:
        """Add an RTT sample (seconds, finite and >= 0); return the new timeout."""
        if not (math.isfinite(rtt) and rtt >= 0):
            return self._timeout
        samples = self._samples
        if samples:
            self._diffs.append(abs(rtt - samples[-1]))
        samples.append(rtt)
        cfg = self.config
        p99 = self.rtt_p99() or 0.0
        wanted = cfg.interval * (1 + cfg.jitter) + cfg.rtt_factor * (p99 + self.rtt_jitter())
        self._timeout = min(max(cfg.timeout, wanted), self.bound)
        return self._timeout


class Liveness:
    """Tracks the last sign of life of a client, in loop-clock seconds."""

    def __init__(self, timeout: float, now: float) -> None:
        self.timeout = timeout
        self._last_seen = now
        self._stalled = False

    @property
    def last_seen(self) -> float:
        return self._last_seen

    def seen(self, now: float) -> None:
        self._last_seen = max(self._last_seen, now)

    def stall(self) -> None:
        """Our reader cannot read (our fault): stop counting silence."""
        self._stalled = True

    def unstall(self, now: float) -> None:
        """Our reader reads again: silence counts from now, not from before the stall."""
        self._stalled = False
        self.seen(now)

    def deadline(self) -> float | None:
        """Loop time at which the client counts as dead; None while our reader is stalled."""
        return None if self._stalled else self._last_seen + self.timeout

    def is_dead(self, now: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and now >= deadline


def rtt_from_pong(t_ms: float, now_ms: float, timeout_ms: float) -> float | None:
    """RTT in seconds from a pong echoing ``t`` (our clock, ms), or None if ``t`` is implausible."""
    rtt = now_ms - t_ms
    # ``not (0 <= rtt <= timeout)`` also refuses NaN, which every comparison calls false.
    if not 0 <= rtt <= timeout_ms:
        return None
    return rtt / 1000.0
