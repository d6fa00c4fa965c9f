"""The pure parts of bench/cluster.py: percentiles and the exactly-once, in-order check."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _load_bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "cluster.py"
    spec = importlib.util.spec_from_file_location("bench_cluster", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


@pytest.mark.parametrize(
    ("q", "expected"), [(1, 1.0), (50, 50.0), (99, 99.0), (99.5, 100.0), (100, 100.0)]
)
def test_percentile_is_nearest_rank(q: float, expected: float) -> None:
    assert bench.percentile([float(i) for i in range(1, 101)], q) == expected


def test_percentile_of_few_and_of_none() -> None:
    assert bench.percentile([7.0], 50) == 7.0
    assert bench.percentile([1.0, 2.0], 50) == 1.0
    assert bench.percentile([1.0, 2.0], 99) == 2.0
    assert math.isnan(bench.percentile([], 50))


def feed(numbers: list[int]) -> Any:
    arrivals = bench.Arrivals()
    for n in numbers:
        arrivals.feed(n)
    return arrivals


def test_exactly_once_in_order_has_no_problem() -> None:
    arrivals = feed([1, 2, 3, 4])
    assert arrivals.complete(4)
    assert arrivals.problems(4) == []


def test_a_message_still_missing_is_lost() -> None:
    arrivals = feed([1, 2, 4])
    assert not arrivals.complete(4)
    assert arrivals.problems(4) == ["1 lost"]
    # The tail counts too: 5 was sent, never seen.
    assert feed([1, 2, 3, 4]).problems(5) == ["1 lost"]


def test_duplicates_and_late_arrivals_are_told_apart() -> None:
    arrivals = feed([1, 3, 2, 3, 1])
    assert arrivals.complete(3)
    assert arrivals.problems(3) == ["2 duplicated", "1 out of order"]
    assert arrivals.received == 5


def test_a_number_beyond_what_was_sent_is_reported() -> None:
    assert feed([1, 2, 3]).problems(2) == ["1 never sent"]
