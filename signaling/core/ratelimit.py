"""Token buckets for message and connection rates, and per-IP connection accounting. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float, cost: float = 1.0) -> bool:
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def wait_time(self, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are available (after a failed ``take``)."""
        return max(0.0, (cost - self.tokens) / self.rate) if self.rate > 0 else float("inf")


@dataclass(slots=True)
class IpLimiter:
    """Concurrent connections and new-connection rate per client address."""

    max_concurrent: int
    rate: float
    burst: float
    #: Addresses tracked before idle, refilled buckets are forgotten.
    max_tracked: int = 10_000
    _open: dict[str, int] = field(default_factory=dict)
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def admit(self, ip: str, now: float) -> str | None:
        """Register a new connection from ``ip``; return why not, or None if admitted."""
        if self._open.get(ip, 0) >= self.max_concurrent:
            return f"more than {self.max_concurrent} connections from {ip}"
        bucket = self._buckets.get(ip)
        if bucket is None and len(self._buckets) >= self.max_tracked:
            self._prune(now)
        if bucket is None:
            bucket = self._buckets[ip] = TokenBucket(self.rate, self.burst)
        if not bucket.take(now):
            return f"more than {self.rate:g} new connections per second from {ip}"
        self._open[ip] = self._open.get(ip, 0) + 1
        return None

    def release(self, ip: str) -> None:
        count = self._open.get(ip, 0) - 1
        if count > 0:
            self._open[ip] = count
        else:
            self._open.pop(ip, None)

    def _prune(self, now: float) -> None:
        """Forget addresses with no open connection whose bucket has refilled: the map stays
        bounded, and closing a connection never resets an address's rate (it is kept until full).
        """
        for ip, bucket in list(self._buckets.items()):
            if ip not in self._open and bucket.tokens + (now - bucket.stamp) * bucket.rate >= bucket.burst:
                del self._buckets[ip]

    def open_count(self, ip: str) -> int:
        return self._open.get(ip, 0)

    @property
    def tracked(self) -> int:
        """Addresses remembered: past ``max_tracked`` only those with open connections or a
        bucket still refilling stay."""
        return len(self._buckets)


@dataclass(slots=True)
class FailureThrottle:
    """Failures (wrong admin tokens) per address as a token bucket: an address that spent its
    burst is blocked, right token or not, until a token has refilled. Bounded like :class:`IpLimiter`."""

    rate: float
    burst: float
    max_tracked: int = 10_000
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def blocked(self, address: str, now: float) -> bool:
        bucket = self._buckets.get(address)
        if bucket is None:
            return False
        bucket.take(now, 0.0)  # refill only
        return bucket.tokens < 1.0

    def failed(self, address: str, now: float) -> None:
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.max_tracked:
                self._prune(now)
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst)
        bucket.take(now)

    @property
    def tracked(self) -> int:
        """Addresses remembered (at most ``max_tracked``)."""
        return len(self._buckets)

    def retry_after(self, address: str) -> float:
        bucket = self._buckets.get(address)
        return bucket.wait_time() if bucket is not None else 0.0

    def _prune(self, now: float) -> None:
        for address, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.stamp) * bucket.rate >= bucket.burst:
                del self._buckets[address]
        if len(self._buckets) >= self.max_tracked:  # all busy: forget the oldest half
            for address in list(self._buckets)[: self.max_tracked // 2]:
                del self._buckets[address]
