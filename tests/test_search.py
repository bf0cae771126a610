"""The 16-bit search: ranking by measured gain, bisection, pruning with a record per tensor,
budget, Pareto front, reachability of the gated outputs, the anchors' counts, and when a 16-bit
superset can (and cannot) score below its subset."""

from __future__ import annotations

from itertools import combinations, pairwise

import numpy as np
import pytest
from onnx import helper

from pipeline.analysis.anchors import estimates
from pipeline.analysis.search import Score, Search, measurable, run_search
from pipeline.analysis.search_scenes import upstream_of
from pipeline.quantization.encoding import dequantize, quantize, tf_encoding
from tests.graphs import model_of

GAIN = {"a": 0.1, "b": 3.0, "c": 0.0, "d": 2.0, "e": 0.5}  # dB each tensor adds at 16 bits


def _evaluate(tensors: frozenset[str]) -> tuple[Score, bool]:
    sqnr = 10.0 + sum(GAIN[t] for t in tensors)
    return Score(sqnr, 0.99, None), sqnr >= 14.9


def test_search_finds_the_smallest_passing_set_and_records_every_removal() -> None:
    seeds = ["a", "c", "e", "b", "d"]  # the seed ranking puts the useful ones last
    search = Search(_evaluate, dict.fromkeys(GAIN, 100), 40)
    record = run_search(search, seeds, measured=5)
    assert record.evaluations <= 40
    assert record.measured_gain_db == pytest.approx(GAIN)
    assert sorted(record.chosen or []) == ["b", "d"]
    assert _evaluate(frozenset(record.chosen or []))[1]
    # every removal tried: each tensor of the set fails the gate without it
    assert {r.tensor for r in record.removals if r.outcome == "stays"} == {"b", "d"}
    assert all(
        r.tried and r.passes_without is False for r in record.removals if r.outcome == "stays"
    )
    # the front: more bytes only for a better SQNR, the cheapest first
    front = record.pareto
    assert [p.extra_bytes for p in front] == sorted(p.extra_bytes for p in front)
    assert all(x.output_sqnr_db < y.output_sqnr_db for x, y in pairwise(front))


def test_a_small_budget_measures_fewer_and_says_why_each_tensor_stays() -> None:
    seeds = ["a", "c", "e", "b", "d"]
    search = Search(_evaluate, dict.fromkeys(GAIN, 100), 9)
    record = run_search(search, seeds, measured=5)
    assert record.evaluations <= 9
    assert len(record.measured_gain_db) == measurable(9, 5, 5) == 2
    assert _evaluate(frozenset(record.chosen or []))[1]
    for r in record.removals:  # every tensor of the bisection's set: tried, or why not
        assert r.outcome in ("removed", "stays", "not tried") and r.why
        assert r.tried == (r.outcome != "not tried")


def test_pruning_says_which_removals_the_budget_left_untried() -> None:
    gain = {"a": 1.0, "b": 2.0, "c": 3.0}

    def evaluate(tensors: frozenset[str]) -> tuple[Score, bool]:
        sqnr = 10.0 + sum(gain[t] for t in tensors)
        return Score(sqnr, 0.99, None), sqnr >= 15.9

    # 2 (empty, full), no single (measurable(5, 3, 3) == 0), 2 bisection steps, 1 removal
    record = run_search(Search(evaluate, dict.fromkeys(gain, 1), 5), ["a", "b", "c"], 3)
    assert measurable(5, 3, 3) == 0 and record.evaluations == 5
    assert record.chosen is not None and sorted(record.chosen) == ["a", "b", "c"]
    outcomes = [r.outcome for r in record.removals]
    assert outcomes.count("not tried") == 1 and "stays" in outcomes
    untried = next(r for r in record.removals if r.outcome == "not tried")
    assert not untried.tried and "budget was spent" in untried.why


def test_search_stops_when_even_every_tensor_fails() -> None:
    search = Search(lambda t: (Score(1.0, 0.5, None), False), dict.fromkeys(GAIN, 1), 40)
    record = run_search(search, list(GAIN), measured=5)
    assert record.chosen is None and record.evaluations == 2


def test_only_tensors_upstream_of_the_gated_outputs_are_candidates() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Sigmoid", ["a"], ["y"]),  # the gated output
        helper.make_node("Tanh", ["a"], ["side"]),  # another output: not upstream of y
        helper.make_node("Neg", ["side"], ["side2"]),
    ]
    graph = model_of(nodes).graph
    assert upstream_of(graph, ["y"]) == {"x", "a", "y"}
    assert upstream_of(graph, ["side2"]) == {"x", "a", "side", "side2"}


def test_anchor_counts_follow_the_documented_algorithms() -> None:
    seeds = ["a", "c", "e", "b", "d"]
    record = run_search(Search(_evaluate, dict.fromkeys(GAIN, 1), 40), seeds, measured=5)
    nncf, aimet = estimates(record.model_copy(update={"candidates": 5}))
    r = len(record.removals)  # the prefix bisection found: b, d (measured gains first)
    assert r == 2
    assert (nncf.evaluations, nncf.set_size) == (1 + 5 + r, r)
    assert (aimet.evaluations, aimet.set_size) == (1 + 5 + 5 + 3, r)
    assert "not a run of the tool" in nncf.basis


# ------------------------------------------------------------ supersets and subsets

SIGNAL = np.random.default_rng(0).normal(0.0, 1.0, 4096)


def _error(x: np.ndarray, bits: int) -> np.ndarray:
    """What quantizing ``x`` at ``bits`` (tf over its range) adds to it."""
    e = tf_encoding(float(x.min()), float(x.max()), bits)
    return dequantize(quantize(x, e), e) - x


def _sqnr(noise: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(SIGNAL**2) / np.sum(noise**2)))


def _output_noise(errors: dict[str, dict[int, np.ndarray]], at16: frozenset[str]) -> np.ndarray:
    return sum(errors[t][16 if t in at16 else 8] for t in errors)  # type: ignore[return-value]


def test_a_16bit_superset_never_scores_below_its_subset_when_errors_do_not_cancel() -> None:
    # four tensors whose errors land on disjoint output elements (no cancellation possible)
    errors = {}
    for k, t in enumerate("abcd"):
        x = np.zeros_like(SIGNAL)
        x[k * 1024 : (k + 1) * 1024] = SIGNAL[k * 1024 : (k + 1) * 1024] * (k + 1)
        errors[t] = {b: np.where(x != 0, _error(x, b), 0.0) for b in (8, 16)}
    sets = [frozenset(c) for n in range(5) for c in combinations("abcd", n)]
    for sub in sets:
        for sup in (s for s in sets if s > sub):
            low, high = _sqnr(_output_noise(errors, sub)), _sqnr(_output_noise(errors, sup))
            assert high >= low - 1e-9, (sorted(sub), sorted(sup))


def test_a_16bit_superset_can_score_below_its_subset_when_errors_cancel() -> None:
    # b's 8-bit error partly cancels a's on the same elements: raising b alone unmasks a's
    a = _error(SIGNAL, 8)
    errors = {"a": {8: a, 16: _error(SIGNAL, 16)}, "b": {8: -0.6 * a, 16: -0.6 * a / 256}}
    assert _sqnr(_output_noise(errors, frozenset({"b"}))) < _sqnr(
        _output_noise(errors, frozenset())
    )
