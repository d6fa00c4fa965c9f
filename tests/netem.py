"""Pure network-impairment models for the test harness: no sockets, no clock, a seeded RNG.

The kernel's netem is not available here, so impairment is done in user space by two shells
that ask these models what to do with each chunk or datagram:

* :class:`LinkShaper` — one direction of the TCP fault proxy (tests/faultproxy.py): latency
  with jitter and a bandwidth limit, in order (TCP never reorders bytes).
* :class:`OutagePlan` — random short outages of a TCP path: stalls (the path goes dark, then
  comes back) and, optionally, cuts (every connection RST).
* :class:`DatagramImpairment` — one direction of a UDP flow (tests/udp_impair.py): Bernoulli
  loss, Gilbert-Elliott burst loss, delay with jitter, reordering, a bandwidth limit and a
  bounded queue.

Every model takes ``now`` from its caller and draws from its own :class:`random.Random`, so a
seed gives the same decisions in a unit test and in a benchmark.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum


class LinkShaper:
    """When a chunk written at ``now`` arrives at the other end of one TCP direction.

    ``latency`` is one-way, each chunk gets a uniform ``±jitter`` on top, ``rate`` (bytes/s,
    0 = unlimited) serialises chunks one after the other. Delivery is in order: a chunk never
    arrives before the one written before it (it is held back, as TCP holds back bytes behind a
    late segment).
    """

    def __init__(self, *, latency: float = 0.0, jitter: float = 0.0, rate: int = 0, rng: random.Random | None = None) -> None:
        self.latency = latency
        self.jitter = jitter
        self.rate = rate
        self.rng = rng or random.Random(0)
        self._wire_free = 0.0  # when the last chunk has left the sender (bandwidth)
        self._last_due = 0.0

    def due(self, now: float, size: int) -> float:
        start = max(now, self._wire_free)
        sent = start + (size / self.rate if self.rate else 0.0)
        self._wire_free = sent
        spread = self.rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0
        # Strictly later than the chunk before: timers due at the same instant may run in any
        # order, and the bytes must not be reordered.
        self._last_due = max(self._last_due + 1e-6, sent + max(0.0, self.latency + spread))
        return self._last_due


class OutageKind(Enum):
    STALL = "stall"  # nothing passes for a while, connections stay open (lost segments, a dead radio)
    CUT = "cut"  # every connection is reset (a NAT rebinding, a crashed middlebox)


@dataclass(frozen=True)
class Outage:
    start: float
    duration: float
    kind: OutageKind


@dataclass(frozen=True)
class OutageConfig:
    #: Mean seconds between the end of one outage and the start of the next (exponential).
    every: float
    #: Duration of a stall, uniform in [shortest, longest] seconds (a cut is instantaneous).
    shortest: float
    longest: float
    #: Share of outages that are cuts rather than stalls.
    cuts: float = 0.0

    def __post_init__(self) -> None:
        if self.every <= 0 or not 0 <= self.shortest <= self.longest or not 0.0 <= self.cuts <= 1.0:
            raise ValueError(f"bad outage config {self}")


class OutagePlan:
    """The sequence of outages of one path: a Poisson process of stalls and cuts."""

    def __init__(self, config: OutageConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng

    def next_after(self, now: float) -> Outage:
        """The next outage once the path is fine again at ``now``."""
        config = self.config
        start = now + self.rng.expovariate(1.0 / config.every)
        if self.rng.random() < config.cuts:
            return Outage(start, 0.0, OutageKind.CUT)
        return Outage(start, self.rng.uniform(config.shortest, config.longest), OutageKind.STALL)

    def between(self, start: float, end: float) -> list[Outage]:
        """Every outage from ``start`` until ``end`` (for planning and tests)."""
        result = []
        now = start
        while True:
            outage = self.next_after(now)
            if outage.start >= end:
                return result
            result.append(outage)
            now = outage.start + outage.duration


@dataclass(frozen=True)
class GilbertElliott:
    """Two-state burst loss: each datagram first moves the chain, then is lost with the state's rate."""

    #: Probability to go from the good to the bad state, and back, per datagram.
    p_bad: float
    p_good: float
    loss_good: float = 0.0
    loss_bad: float = 1.0

    @classmethod
    def bursts(cls, loss: float, mean_burst: float) -> GilbertElliott:
        """Simple Gilbert: lose everything in the bad state, ``loss`` on average, bursts of ``mean_burst``."""
        if not 0.0 < loss < 1.0 or mean_burst < 1.0:
            raise ValueError("loss must be in (0, 1) and mean_burst >= 1")
        p_good = 1.0 / mean_burst
        return cls(p_bad=loss * p_good / (1.0 - loss), p_good=p_good)

    @property
    def mean_loss(self) -> float:
        """Stationary loss rate."""
        bad = self.p_bad / (self.p_bad + self.p_good)
        return bad * self.loss_bad + (1.0 - bad) * self.loss_good


@dataclass(frozen=True)
class Impairment:
    """What one direction of a UDP path does to datagrams (all times in seconds)."""

    #: Independent (Bernoulli) loss, applied to datagrams the burst model let through.
    loss: float = 0.0
    #: Burst loss on top of ``loss``.
    bursts: GilbertElliott | None = None
    delay: float = 0.0
    #: Uniform ±jitter on the delay; the order is kept (a datagram is never overtaken by jitter).
    jitter: float = 0.0
    #: Share of datagrams held back by ``reorder_by`` more, so later ones overtake them.
    reorder: float = 0.0
    reorder_by: float = 0.0
    #: Bytes per second (0 = unlimited); datagrams queue behind one another.
    rate: int = 0
    #: Datagrams in flight at most; beyond that the tail is dropped (a router's queue).
    queue: int = 512

    @property
    def mean_loss(self) -> float:
        burst = self.bursts.mean_loss if self.bursts else 0.0
        return 1.0 - (1.0 - burst) * (1.0 - self.loss)


@dataclass
class ImpairmentStats:
    seen: int = 0
    lost: int = 0
    burst_lost: int = 0
    overflow: int = 0
    reordered: int = 0

    @property
    def dropped(self) -> int:
        return self.lost + self.burst_lost + self.overflow


class DatagramImpairment:
    """Decides, for each datagram of one direction, whether and when it is delivered."""

    def __init__(self, impairment: Impairment, rng: random.Random) -> None:
        self.impairment = impairment
        self.rng = rng
        self.stats = ImpairmentStats()
        self._bad = False
        self._wire_free = 0.0
        self._last_due = 0.0

    def admit(self, now: float, size: int, in_flight: int) -> float | None:
        """The delivery time of a datagram sent at ``now``, or None when it is dropped.

        ``in_flight`` is how many datagrams of this direction wait for delivery.
        """
        imp = self.impairment
        stats = self.stats
        stats.seen += 1
        if imp.bursts is not None:
            if self._bad:
                self._bad = self.rng.random() >= imp.bursts.p_good
            else:
                self._bad = self.rng.random() < imp.bursts.p_bad
            rate = imp.bursts.loss_bad if self._bad else imp.bursts.loss_good
            if rate and self.rng.random() < rate:
                stats.burst_lost += 1
                return None
        if imp.loss and self.rng.random() < imp.loss:
            stats.lost += 1
            return None
        if in_flight >= imp.queue:
            stats.overflow += 1
            return None
        start = max(now, self._wire_free)
        sent = start + (size / imp.rate if imp.rate else 0.0)
        self._wire_free = sent
        spread = self.rng.uniform(-imp.jitter, imp.jitter) if imp.jitter else 0.0
        due = sent + max(0.0, imp.delay + spread)
        if imp.reorder and self.rng.random() < imp.reorder:
            # Held back without moving the in-order floor: the next datagrams overtake it.
            stats.reordered += 1
            return max(due, self._last_due) + imp.reorder_by
        self._last_due = max(self._last_due, due)
        return self._last_due
