"""Heartbeat policy: when to ping, when a silent client is dead, and the RTT a pong proves. No I/O.

The server pings every ``interval`` (±``jitter``; the first ping at a random point of the first
interval so that clients reconnecting together do not ping together). Any inbound frame proves
the client alive. Silence is only counted while our own reader is able to read: if our side is
the bottleneck (the reader is stalled behind a full inbound queue), the client is not blamed.
"""

from __future__ import annotations

import random

from signaling.config import HeartbeatConfig


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

    def detection_bound(self) -> float:
        """Worst time from the client's last frame to the 4013 close (for docs and tests)."""
        return self.config.timeout


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
