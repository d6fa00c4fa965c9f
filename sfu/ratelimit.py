"""Rate limiting of keyframe requests sent upstream.

Every subscriber that joins, loses a picture or is waiting at the keyframe gate asks for a
keyframe; forwarding each request would make the publisher send keyframes back to back (large,
bursty frames that cause more loss). One request per interval per track serves them all.
"""

from __future__ import annotations


class KeyframeRequestLimiter:
    """Allows at most one request per ``interval`` seconds (time is passed in: pure logic)."""

    __slots__ = ("_interval", "_last", "allowed", "suppressed")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last: float | None = None
        self.allowed = 0
        self.suppressed = 0

    def try_acquire(self, now: float) -> bool:
        if self._last is not None and now - self._last < self._interval:
            self.suppressed += 1
            return False
        self._last = now
        self.allowed += 1
        return True
