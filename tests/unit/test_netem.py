"""The pure impairment models of the harness (tests/netem.py): seeded, no sockets, no clock."""

from __future__ import annotations

import itertools
import random

import pytest

from tests.netem import (
    DatagramImpairment,
    GilbertElliott,
    Impairment,
    LinkShaper,
    OutageConfig,
    OutageKind,
    OutagePlan,
)


def test_link_shaper_keeps_order_under_jitter() -> None:
    shaper = LinkShaper(latency=0.1, jitter=0.1, rng=random.Random(3))
    dues = [shaper.due(now=i * 0.001, size=100) for i in range(500)]
    assert dues == sorted(dues) and len(set(dues)) == len(dues)
    assert all(due >= i * 0.001 for i, due in enumerate(dues))
    # The jitter is really there: some chunks are held back behind a late one.
    gaps = [b - a for a, b in itertools.pairwise(dues)]
    assert max(gaps) > 0.05


def test_link_shaper_serialises_at_the_rate() -> None:
    shaper = LinkShaper(latency=0.05, rate=10_000)
    # Ten 1,000-byte chunks written at once take one second on the wire.
    dues = [shaper.due(now=0.0, size=1000) for _ in range(10)]
    assert dues[0] == pytest.approx(0.15)
    assert dues[-1] == pytest.approx(1.05)
    # An idle wire starts again from now.
    assert shaper.due(now=5.0, size=1000) == pytest.approx(5.15)


def test_link_shaper_without_impairment_is_immediate() -> None:
    shaper = LinkShaper()
    assert shaper.due(now=2.0, size=10) == pytest.approx(2.0)


def test_outage_plan_is_seeded_and_bounded() -> None:
    config = OutageConfig(every=5.0, shortest=0.5, longest=2.0, cuts=0.25)
    plan = OutagePlan(config, random.Random(11)).between(0.0, 2000.0)
    again = OutagePlan(config, random.Random(11)).between(0.0, 2000.0)
    assert plan == again
    # No two outages overlap, and they come in order.
    for before, after in itertools.pairwise(plan):
        assert after.start >= before.start + before.duration
    stalls = [o for o in plan if o.kind is OutageKind.STALL]
    cuts = [o for o in plan if o.kind is OutageKind.CUT]
    assert all(0.5 <= o.duration <= 2.0 for o in stalls)
    assert all(o.duration == 0.0 for o in cuts)
    # ~2000 / (5 + 0.75 * 1.25) outages, a quarter of them cuts.
    assert 250 < len(plan) < 420
    assert 0.15 < len(cuts) / len(plan) < 0.35


def test_outage_plan_without_cuts_only_stalls() -> None:
    plan = OutagePlan(OutageConfig(every=1.0, shortest=0.1, longest=0.2), random.Random(1)).between(0, 100)
    assert plan and {o.kind for o in plan} == {OutageKind.STALL}


@pytest.mark.parametrize(
    "config",
    [
        {"every": 0.0, "shortest": 0.1, "longest": 0.2},
        {"every": 1.0, "shortest": 0.3, "longest": 0.2},
        {"every": 1.0, "shortest": 0.1, "longest": 0.2, "cuts": 1.5},
    ],
)
def test_outage_config_refuses_nonsense(config: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="bad outage config"):
        OutageConfig(**config)


def test_gilbert_elliott_bursts_hit_the_mean_and_the_burst_length() -> None:
    model = GilbertElliott.bursts(loss=0.1, mean_burst=3.0)
    assert model.mean_loss == pytest.approx(0.1)
    impairment = DatagramImpairment(Impairment(bursts=model, queue=10**9), random.Random(5))
    outcomes = [impairment.admit(now=0.0, size=100, in_flight=0) is None for _ in range(100_000)]
    assert sum(outcomes) / len(outcomes) == pytest.approx(0.1, abs=0.01)
    runs, run = [], 0
    for lost in outcomes:
        if lost:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    assert sum(runs) / len(runs) == pytest.approx(3.0, rel=0.1)
    assert impairment.stats.burst_lost == sum(outcomes) and impairment.stats.lost == 0


def test_gilbert_elliott_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="loss must be"):
        GilbertElliott.bursts(loss=1.0, mean_burst=2.0)
    with pytest.raises(ValueError, match="loss must be"):
        GilbertElliott.bursts(loss=0.1, mean_burst=0.5)


def test_bernoulli_loss_rate_is_seeded() -> None:
    def losses(seed: int) -> list[bool]:
        impairment = DatagramImpairment(Impairment(loss=0.05), random.Random(seed))
        return [impairment.admit(now=0.0, size=10, in_flight=0) is None for _ in range(20_000)]

    assert losses(1) == losses(1) and losses(1) != losses(2)
    assert sum(losses(1)) / 20_000 == pytest.approx(0.05, abs=0.006)
    assert Impairment(loss=0.05, bursts=GilbertElliott.bursts(0.05, 2)).mean_loss == pytest.approx(0.0975)


def test_delay_and_jitter_keep_order_without_reordering() -> None:
    impairment = DatagramImpairment(Impairment(delay=0.1, jitter=0.03), random.Random(2))
    dues = [impairment.admit(now=i * 0.002, size=1000, in_flight=0) for i in range(2000)]
    assert None not in dues
    assert dues == sorted(dues)  # type: ignore[type-var]
    assert all(0.07 <= due - i * 0.002 <= 0.2 for i, due in enumerate(dues) if due is not None)


def test_reordering_lets_later_datagrams_overtake() -> None:
    impairment = DatagramImpairment(Impairment(delay=0.05, reorder=0.1, reorder_by=0.02), random.Random(4))
    dues = [impairment.admit(now=i * 0.001, size=1000, in_flight=0) for i in range(5000)]
    overtaken = sum(1 for a, b in itertools.pairwise(dues) if a is not None and b is not None and b < a)
    assert impairment.stats.reordered == pytest.approx(500, rel=0.15)
    assert overtaken >= impairment.stats.reordered * 0.9


def test_a_full_queue_drops_the_tail() -> None:
    impairment = DatagramImpairment(Impairment(delay=1.0, queue=4), random.Random(0))
    verdicts = [impairment.admit(now=0.0, size=10, in_flight=n) for n in range(6)]
    assert [v is None for v in verdicts] == [False] * 4 + [True] * 2
    assert impairment.stats.overflow == 2 and impairment.stats.dropped == 2


def test_a_rate_limit_queues_datagrams() -> None:
    impairment = DatagramImpairment(Impairment(rate=100_000), random.Random(0))
    dues = [impairment.admit(now=0.0, size=1000, in_flight=0) for _ in range(100)]
    assert dues[-1] == pytest.approx(1.0)
