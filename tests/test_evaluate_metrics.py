from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.analysis.metrics import Comparison, LayerAcc, Reference, cosine, sqnr_db


def test_sqnr_reference_definition():
    x = np.array([3.0, 4.0], np.float32)  # ||x||^2 = 25
    y = np.array([3.0, 3.0], np.float32)  # ||x-y||^2 = 1
    acc = LayerAcc()
    ref = Reference.of(x, -10, 10)
    acc.add(ref, Comparison.of(ref, y), "img")
    assert acc.sqnr("golden") == pytest.approx(10 * math.log10(25))
    assert acc.sqnr("inference") == pytest.approx(10 * math.log10(18))
    assert acc.summary("golden").cosine == pytest.approx(21 / (5 * math.sqrt(18)))


def test_identical_tensors_give_a_large_finite_sqnr():
    assert math.isfinite(sqnr_db(1.0, 0.0)) and sqnr_db(1.0, 0.0) > 300


def test_cosine_of_zero_tensors():
    assert cosine(0.0, 0.0, 0.0) == 1.0
    assert cosine(0.0, 1.0, 0.0) == 0.0


def test_pooled_sqnr_equals_concatenation_and_tracks_worst_image():
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=100).astype(np.float32) for _ in range(3)]
    ys = [
        x + rng.normal(scale=s, size=100).astype(np.float32)
        for x, s in zip(xs, (0.01, 0.3, 0.05), strict=True)
    ]
    acc = LayerAcc()
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        ref = Reference.of(x, -1.0, 1.0)
        acc.add(ref, Comparison.of(ref, y), f"img{i}")
    X, Y = np.concatenate(xs).astype(np.float64), np.concatenate(ys).astype(np.float64)
    assert acc.sqnr() == pytest.approx(10 * math.log10((X @ X) / ((X - Y) @ (X - Y))))
    assert acc.worst_image == "img1"
    assert acc.summary("golden").clip_rate == pytest.approx(np.mean(np.abs(X) > 1.0))


@settings(max_examples=200, deadline=None)
@given(
    values=arrays(np.float32, st.integers(1, 3000), elements=st.floats(-1e6, 1e6, width=32)),
    q=st.sampled_from([0.0, 0.5, 0.9, 0.9999, 1.0]),
    step=st.integers(1, 7),
)
def test_quantile_from_the_kept_top_values_is_numpys_linear_quantile(values, q, step):
    """The comparison pass keeps the largest |x| of x[::step]; the quantile read from them is
    np.quantile's (linear method) of that sample."""
    from pipeline.analysis.metrics import top_needed, upper_quantile_from_top
    from pipeline.native import kernels

    sample = np.abs(values[::step]).astype(np.float64)
    need = top_needed(sample.size, q)
    c = kernels.compare(values, 0.0, 0.0, top=need, top_step=step)
    assert list(c.top) == sorted(sample, reverse=True)[:need]
    want = float(np.quantile(sample, q))
    assert upper_quantile_from_top(c.top, sample.size, q) == pytest.approx(
        want, rel=1e-12, abs=1e-30
    )
