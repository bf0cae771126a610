"""The compiled single-pass kernels against plain numpy on the same arrays."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.native import kernels

FLOATS = st.floats(-1e6, 1e6, allow_nan=False, width=32)


def _numpy_histogram(x, start, width, bins):
    t = np.floor((x - np.float32(start)) / np.float32(width))
    t = np.clip(t, -1, bins).astype(np.int64) + 1
    return np.bincount(t, minlength=bins + 2)[1 : bins + 1]


@settings(max_examples=200, deadline=None)
@given(
    x=arrays(np.float32, st.integers(1, 5000), elements=FLOATS),
    start=st.floats(-1e3, 1e3),
    width=st.floats(1e-4, 10),
    bins=st.sampled_from([1, 7, 1536]),
)
def test_histogram_equals_numpy_floor_binning(x, start, width, bins):
    width = float(np.float32(width))
    np.testing.assert_array_equal(
        kernels.histogram(x, start, width, bins), _numpy_histogram(x, start, width, bins)
    )


def test_histogram_on_relu_like_data_and_block_edges():
    rng = np.random.default_rng(0)
    for n in (2047, 2048, 2049, 100_003):  # around the kernel's block size
        x = np.maximum(rng.standard_normal(n).astype(np.float32), 0) * 3
        np.testing.assert_array_equal(
            kernels.histogram(x, -0.25, 0.0123, 1536), _numpy_histogram(x, -0.25, 0.0123, 1536)
        )


def test_histogram_drops_nan_and_out_of_range():
    x = np.array([np.nan, -np.inf, np.inf, -5.0, 0.0, 0.5, 99.0], np.float32)
    np.testing.assert_array_equal(kernels.histogram(x, 0.0, 0.5, 4), [1, 1, 0, 0])


@settings(max_examples=200, deadline=None)
@given(x=arrays(np.float32, st.integers(1, 3000), elements=st.floats(width=32, allow_nan=False)))
def test_minmax_equals_numpy(x):
    lo, hi, nan = kernels.minmax(x)
    assert (lo, hi, nan) == (float(x.min()), float(x.max()), False)


@pytest.mark.parametrize("value", [np.nan, -np.nan])
def test_minmax_reports_nan(value):
    x = np.array([1.0, value, -2.0], np.float32)
    assert kernels.minmax(x)[2] is True


@settings(max_examples=100, deadline=None)
@given(
    data=arrays(np.float32, st.integers(1, 3000), elements=st.floats(-1e3, 1e3, width=32)),
    noise=st.floats(0, 1),
)
def test_difference_sums_equal_float64_numpy(data, noise):
    y = data + np.float32(noise) * np.sign(data)
    s = kernels.compare(data, 0.0, 0.0, [y]).sums[0]
    see, syy, worst = s.see, s.syy, s.max_abs
    e = (data - y).astype(np.float64)
    np.testing.assert_allclose(see, np.sum(e * e), rtol=1e-12, atol=1e-30)
    np.testing.assert_allclose(syy, np.sum(y.astype(np.float64) ** 2), rtol=1e-12)
    assert worst == float(np.abs(data - y).max())


def test_reference_sums_count_values_outside_the_range():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 1.5, 3.0], np.float32)
    c = kernels.compare(x, -1.0, 1.5)
    sxx, outside = c.sxx, c.outside
    assert outside == 2 and sxx == pytest.approx(float(np.sum(x.astype(np.float64) ** 2)))


def test_kept_top_values_follow_a_sort_of_the_strided_sample():
    """NaN ranks above +inf, as np.sort places it; a short sample leaves zeros."""
    x = np.array([1.0, np.nan, -3.0, 7.0, -np.inf, 0.5, 2.0], np.float32)
    top = kernels.compare(x, 0.0, 0.0, top=4).top
    assert np.isnan(top[0]) and list(top[1:]) == [np.inf, 7.0, 3.0]
    assert list(kernels.compare(x, 0.0, 0.0, top=4, top_step=3).top) == [7.0, 2.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="top_step"):
        kernels.compare(x, 0.0, 0.0, top=1, top_step=0)


@pytest.mark.parametrize("mode", ["half_away", "half_even"])
def test_fake_quant_in_the_kernel_equals_the_graph_chain(mode):
    """Layerwise outputs are fake-quantized inside the comparison pass; bit for bit what the
    simulation graph's chain gives on onnxruntime."""
    from onnx import helper

    from pipeline.analysis.metrics import Comparison, Reference, fake_quant_of
    from pipeline.graph.runtime import Runner
    from pipeline.graph.view import analyze
    from pipeline.quantization.encoding import tf_encoding
    from pipeline.quantization.encodings import Encodings
    from pipeline.quantization.simulate import SimOptions, build_quantized_model
    from tests.graphs import model_of

    e = tf_encoding(-1.3, 2.7)
    # the simulation of y -> Identity -> yq with only yq quantized: the chain alone
    view = analyze(
        model_of(
            [helper.make_node("Identity", ["y"], ["yq"])], shape=[1, 4, 64, 64], names=("y", "yq")
        )
    )
    m = build_quantized_model(view, Encodings({"yq": e}, {}, {}), SimOptions(round_mode=mode))
    rng = np.random.default_rng(3)
    y = rng.uniform(-2, 3.5, (1, 4, 64, 64)).astype(np.float32)
    y.flat[:50] = (np.arange(50) - 20 + 0.5 - e.offset) * np.float32(e.scale)  # near ties
    x = y + rng.normal(0, 0.01, y.shape).astype(np.float32)
    yq = Runner(m).run(y)["yq"]
    ref = Reference.of(x, e.min, e.max)
    graph = Comparison.of(ref, yq)
    fused = Comparison.of(ref, y, fake_quant_of(e, mode))
    assert fused == graph


@settings(max_examples=60, deadline=None)
@given(
    x=arrays(np.float32, st.integers(1, 9000), elements=st.floats(-50, 50, width=32)),
    seed=st.integers(0, 2**32 - 1),
)
def test_one_pass_over_several_tensors_equals_one_pass_each(x, seed):
    """``compare`` reads the reference once, a block at a time, for every tensor compared with
    it; each tensor's sums are bit for bit those of comparing it alone."""
    rng = np.random.default_rng(seed)
    ys = [x + rng.normal(0, s, x.size).astype(np.float32) for s in (0.0, 0.1, 3.0)]
    fq = kernels.FakeQuant(-20.0, 30.0, 50 / 255, -102.0, bool(seed % 2))
    both = kernels.compare(x, -10.0, 10.0, [*ys, ys[1]], [None, None, None, fq])
    alone = kernels.compare(x, -10.0, 10.0)
    assert (both.sxx, both.outside, both.peak) == (alone.sxx, alone.outside, alone.peak)
    assert both.peak == float(np.abs(x).max())
    for y, s in zip(ys, both.sums, strict=False):
        assert s == kernels.compare(x, -10.0, 10.0, [y]).sums[0]
    assert both.sums[3] == kernels.compare(x, -10.0, 10.0, [ys[1]], [fq]).sums[0]


def test_kernels_reject_what_they_cannot_read():
    with pytest.raises(TypeError, match="float32"):
        kernels.minmax(np.zeros(4, np.float64))
    with pytest.raises(TypeError, match="contiguous"):
        kernels.histogram(np.zeros(8, np.float32)[::2], 0.0, 1.0, 4)


@settings(max_examples=100, deadline=None)
@given(
    x=arrays(np.float32, st.integers(1, 5000), elements=st.floats(width=32)),
    start=st.floats(-1e3, 1e3),
    width=st.floats(1e-4, 10),
)
def test_histogram_with_minmax_in_one_read_equals_both_apart(x, start, width):
    (lo, hi, nan), counts = kernels.minmax_histogram(x, start, width, 512)
    np.testing.assert_array_equal(counts, kernels.histogram(x, start, width, 512))
    np.testing.assert_array_equal([lo, hi, nan], kernels.minmax(x))


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_every_instruction_set_gives_the_same_bits(tmp_path, monkeypatch):
    """The installed library carries an AVX2 and a baseline build of each kernel; a baseline-only
    build of the same source must return the same bytes (lanes fix the order of every sum)."""
    src = Path(kernels.__file__).with_name("_kernels.c")
    lib = tmp_path / "baseline.so"
    flags = ["-O3", "-std=c11", "-fno-fast-math", "-ffp-contract=off", "-DFIELDCAL_NO_CLONES"]
    subprocess.run(["cc", *flags, "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
    rng = np.random.default_rng(5)
    x = np.maximum(rng.standard_normal(50_003).astype(np.float32), 0) * 7
    y = x + rng.normal(0, 0.1, x.size).astype(np.float32)
    fq = kernels.FakeQuant(0.0, 20.0, 20 / 255, 0.0, False)

    def results() -> str:
        return repr(
            (
                kernels.minmax_histogram(x, -0.1, 0.05, 512),
                kernels.histogram(y, -1.0, 0.04, 512),
                kernels.compare(x, 0.0, 10.0, [y, y], [None, fq]),
            )
        )

    installed = results()
    baseline = ctypes.CDLL(str(lib))
    for name in ("fc_minmax", "fc_histogram", "fc_compare"):
        getattr(baseline, name).argtypes = getattr(kernels._lib(), name).argtypes
        getattr(baseline, name).restype = getattr(kernels._lib(), name).restype
    monkeypatch.setattr(kernels, "_lib", lambda: baseline)
    assert results() == installed
