"""The 16-bit search: ranking by measured gain, bisection, pruning, budget, Pareto front."""

from __future__ import annotations

from itertools import pairwise

import pytest

from pipeline.analysis.search import Score, Search, run_search

GAIN = {"a": 0.1, "b": 3.0, "c": 0.0, "d": 2.0, "e": 0.5}  # dB each tensor adds at 16 bits


def _evaluate(tensors: frozenset[str]) -> tuple[Score, bool]:
    sqnr = 10.0 + sum(GAIN[t] for t in tensors)
    return Score(sqnr, 0.99, None), sqnr >= 14.9


@pytest.mark.parametrize("budget", [40, 9])
def test_search_finds_the_smallest_passing_set_within_its_budget(budget):
    seeds = ["a", "c", "e", "b", "d"]  # the seed ranking puts the useful ones last
    search = Search(_evaluate, dict.fromkeys(GAIN, 100), budget)
    record = run_search(search, seeds, measured=5)
    assert record.evaluations <= budget
    assert record.measured_gain_db == pytest.approx(GAIN)
    assert sorted(record.chosen or []) == ["b", "d"]
    assert _evaluate(frozenset(record.chosen or []))[1]
    # the front: more bytes only for a better SQNR, the cheapest first
    front = record.pareto
    assert [p.extra_bytes for p in front] == sorted(p.extra_bytes for p in front)
    assert all(x.output_sqnr_db < y.output_sqnr_db for x, y in pairwise(front))


def test_search_stops_when_even_every_tensor_fails():
    search = Search(lambda t: (Score(1.0, 0.5, None), False), dict.fromkeys(GAIN, 1), 40)
    record = run_search(search, list(GAIN), measured=5)
    assert record.chosen is None and record.evaluations == 2
