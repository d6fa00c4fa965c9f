"""Which bandwidth estimate (REMB) to send upstream to a publisher.

aiortc negotiates no transport-cc, so browsers fall back to REMB on both legs. Each subscriber's
estimate reaches the SFU's sender for it, where aiortc ignores it (there is no encoder). The
publisher only hears the SFU's own upstream estimate. Capping that with the *smallest* fresh
subscriber estimate makes the publisher encode at a rate every subscriber can take (there is no
simulcast in aiortc to serve different rates).
"""

from __future__ import annotations

from collections.abc import Hashable

#: Send a new cap upstream at once when the minimum falls by this fraction or more.
DECREASE_FRACTION = 0.05
#: ...or rises by this fraction, but at most once per ``INCREASE_INTERVAL`` seconds.
INCREASE_FRACTION = 0.1
INCREASE_INTERVAL = 1.0


class RembPolicy:
    """Combines the upstream estimate with subscribers' estimates (all in bits per second)."""

    __slots__ = ("_estimate", "_last_sent", "_last_sent_at", "_subscribers", "_ttl")

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._subscribers: dict[Hashable, tuple[int, float]] = {}
        self._estimate: int | None = None
        self._last_sent: int | None = None
        self._last_sent_at = 0.0

    def subscriber_minimum(self, now: float) -> int | None:
        """Smallest estimate among subscribers heard from within the TTL."""
        fresh = [b for b, at in self._subscribers.values() if now - at <= self._ttl]
        return min(fresh) if fresh else None

    def on_upstream_estimate(self, bitrate: int, now: float) -> int:
        """The SFU's receiver estimated ``bitrate``; return what to actually send."""
        self._estimate = bitrate
        cap = self.subscriber_minimum(now)
        value = bitrate if cap is None else min(bitrate, cap)
        self._last_sent, self._last_sent_at = value, now
        return value

    def on_subscriber_estimate(self, key: Hashable, bitrate: int, now: float) -> int | None:
        """A subscriber reported ``bitrate``; return a value to send upstream now, or None."""
        self._subscribers[key] = (bitrate, now)
        return self._maybe_send(now)

    def remove_subscriber(self, key: Hashable) -> None:
        """A subscriber left: its estimate no longer caps the next upstream REMB."""
        self._subscribers.pop(key, None)

    def _maybe_send(self, now: float) -> int | None:
        cap = self.subscriber_minimum(now)
        if cap is None:
            return None
        value = cap if self._estimate is None else min(cap, self._estimate)
        last = self._last_sent
        fell = last is None or value <= last * (1 - DECREASE_FRACTION)
        rose = (
            last is not None
            and value >= last * (1 + INCREASE_FRACTION)
            and now - self._last_sent_at >= INCREASE_INTERVAL
        )
        if not (fell or rose):
            return None
        self._last_sent, self._last_sent_at = value, now
        return value
