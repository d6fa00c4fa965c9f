"""Reconnect backoff for clients: immediate first retry, then capped exponential with full jitter.

Full jitter (a uniform draw in [0, min(cap, base·2ⁿ)]) spreads a crowd of clients that lost the
same server, so they do not return in waves. The attempt counter resets only once a connection
has stayed up for ``stable_after`` seconds: a server that accepts and then drops at once must not
be hammered with immediate retries.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    base: float = 0.25
    factor: float = 2.0
    cap: float = 10.0
    stable_after: float = 10.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0
    _connected_at: float | None = None

    def next_delay(self) -> float:
        """Delay before the next attempt; the first attempt after a stable period is immediate."""
        n = self.attempt
        self.attempt += 1
        if n == 0:
            return 0.0
        ceiling = min(self.cap, self.base * self.factor ** (n - 1))
        return self.rng.uniform(0.0, ceiling)

    def connected(self, now: float) -> None:
        self._connected_at = now

    def disconnected(self, now: float) -> None:
        """Reset the counter if the connection that just ended had been stable."""
        if self._connected_at is not None and now - self._connected_at >= self.stable_after:
            self.attempt = 0
        self._connected_at = None
