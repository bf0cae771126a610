"""Encoding math against known answers (docs §2.4, §3.1) and its invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.quantization.encoding import (
    dequantize,
    fake_quant_per_channel,
    from_min_max,
    from_scale_offset,
    int32_bias_encoding,
    onnx_zero_point,
    quantize,
    round_half_away,
    symmetric_encoding,
    tf_encoding,
)
from tests.graphs import libpymo_data

# (data min, data max) -> scale, offset, enc_min, enc_max  (docs §2.4)
TF_TABLE = [
    ((-1.8, 0.5), 0.0090196078, -200, -1.8039216, 0.4960784),
    ((-5.1, 5.1), 0.04, -128, -5.12, 5.08),
    ((5.0, 10.0), 0.0392157, 0, 0.0, 10.0),
    ((-20.0, -6.0), 0.0784314, -255, -20.0, 0.0),
    # AIMET 0.4.0 PyTorch example (docs §2.4)
    ((-2.109158515930176, 2.6086959838867188), 0.018501389771699905, -114, None, None),
]


@pytest.mark.parametrize(
    ("bw", "scale", "offset", "lo", "hi"),
    [
        (8, 0.13527104807835, -33, -4.46394458658555, 30.0301726733937),
        (16, 0.0005263464905772373, -8538, -4.4939463365484515, 30.000170923430794),
    ],
)
def test_tf_matches_libpymo_reference_vectors(bw, scale, offset, lo, hi):
    d = libpymo_data()
    e = tf_encoding(float(d.min()), float(d.max()), bitwidth=bw)
    assert e.offset == offset
    assert e.scale == pytest.approx(scale, rel=1e-6)
    assert (e.min, e.max) == (pytest.approx(lo, rel=1e-6), pytest.approx(hi, rel=1e-6))


@pytest.mark.parametrize(("rng", "scale", "offset", "lo", "hi"), TF_TABLE)
def test_tf_known_answers(rng, scale, offset, lo, hi):
    e = tf_encoding(*rng)
    assert e.offset == offset
    assert e.scale == pytest.approx(scale, rel=1e-6)
    if lo is not None:
        assert e.min == pytest.approx(lo, rel=1e-6, abs=1e-7)
        assert e.max == pytest.approx(hi, rel=1e-6, abs=1e-7)


def test_tf_quantizes_the_spec_example_exactly():
    e = tf_encoding(-1.8, 0.5)
    x = np.array([-1.8, -1.0, 0.0, 0.5])
    q = quantize(x, e)
    assert q.tolist() == [0, 89, 200, 255]
    np.testing.assert_allclose(dequantize(q, e), [-1.8039, -1.0012, 0.0, 0.4961], atol=1e-4)


def test_symmetric_matches_snpe_per_channel_example():
    # docs §3.1: absmax 0.7011175155639648 -> scale, min, offset of the SNPE override example
    e = symmetric_encoding(-0.5, 0.7011175155639648)
    assert e.offset == -128
    assert e.scale == pytest.approx(0.005520610358771377, rel=1e-12)
    assert e.min == pytest.approx(-0.7066381259227362, rel=1e-12)
    assert e.max == pytest.approx(0.7011175155639648, rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "offset"),
    [({}, -128), ({"strict": True}, -127), ({"unsigned": True}, 0)],
)
def test_symmetric_offsets(kwargs, offset):
    lo = 0.0 if kwargs.get("unsigned") else -1.0
    assert symmetric_encoding(lo, 2.0, **kwargs).offset == offset


def test_symmetric_4_bit_grid():
    e = symmetric_encoding(-1.0, 0.7, bitwidth=4)
    assert (e.offset, e.scale) == (-8, pytest.approx(1.0 / 7))


def test_v2_rule_uses_the_negative_step_when_min_dominates():
    e = symmetric_encoding(-1.28, 0.5, rule="max_of_both")
    assert e.scale == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("data", "scale", "offset"),
    [
        ((0.0, 0.0), 0.01 / 255, 0),  # all-zero: min range 0.01
        ((3.0, 3.0), 3.0 / 255, 0),  # constant positive: [0, 3]
        ((-2.0, -2.0), 2.0 / 255, -255),
    ],
)
def test_degenerate_ranges(data, scale, offset):
    e = tf_encoding(*data)
    assert (e.scale, e.offset) == (pytest.approx(scale), offset)


def test_infinite_range_is_guarded():
    e = tf_encoding(-math.inf, 1.0)
    assert math.isfinite(e.scale) and math.isfinite(e.min)


def test_nan_statistics_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        tf_encoding(float("nan"), 1.0)


def test_round_half_away():
    assert [round_half_away(v) for v in (0.5, 1.5, 2.5, -0.5, -2.5)] == [1, 2, 3, -1, -3]


def test_rounding_modes_differ_only_on_ties():
    e = tf_encoding(0.0, 255.0)  # scale 1, offset 0: x/scale is x
    x = np.array([0.5, 1.5, 2.5, 2.4, 2.6])
    assert quantize(x, e, "half_away").tolist() == [1, 2, 3, 2, 3]
    assert quantize(x, e, "half_even").tolist() == [0, 2, 2, 2, 3]


def test_reloading_min_max_reproduces_scale_and_offset():
    e = tf_encoding(-2.109158515930176, 2.6086959838867188)
    again = from_min_max(8, e.min, e.max, False)
    assert again.offset == e.offset
    assert again.scale == pytest.approx(e.scale, rel=1e-12)
    s = symmetric_encoding(-0.3, 0.9)
    assert from_min_max(8, s.min, s.max, True).scale == pytest.approx(s.scale, rel=1e-12)
    r = from_scale_offset(8, e.scale, e.offset, False)
    assert (r.min, r.max) == (pytest.approx(e.min), pytest.approx(e.max))


def test_onnx_zero_point_is_minus_offset():
    assert onnx_zero_point(tf_encoding(-1.8, 0.5)) == 200


def test_int32_bias_grid():
    e = int32_bias_encoding(0.5, 0.01)
    assert e.scale == pytest.approx(0.005)
    assert e.offset == -(2**31)
    assert e.min == pytest.approx(-(2**31) * 0.005)


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def ranges(draw):
    a, b = draw(finite), draw(finite)
    return (min(a, b), max(a, b))


@settings(max_examples=200, deadline=None)
@given(ranges(), st.sampled_from([4, 8, 16]))
def test_tf_properties(rng, bw):
    e = tf_encoding(*rng, bitwidth=bw)
    n = (1 << bw) - 1
    assert -n <= e.offset <= 0
    assert e.min <= 0.0 <= e.max
    # the observed range is covered up to one step (nudging moves both ends together)
    assert e.min <= min(rng[0], 0.0) + e.scale * 0.5 + 1e-9 * abs(rng[0])
    # zero round-trips exactly
    assert dequantize(quantize(np.array([0.0]), e), e)[0] == 0.0


@settings(max_examples=200, deadline=None)
@given(ranges(), st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_quantize_error_within_half_step_inside_range(rng, fracs):
    e = tf_encoding(*rng)
    x = e.min + np.array(fracs) * (e.max - e.min)
    q = quantize(x, e)
    assert q.min() >= 0 and q.max() <= 255
    err = np.abs(dequantize(q, e) - x)
    assert (err <= e.scale / 2 * (1 + 1e-9) + 1e-12 * np.abs(x)).all()


@settings(max_examples=200, deadline=None)
@given(ranges(), st.sampled_from([4, 8, 16]))
def test_symmetric_keeps_fixed_offset(rng, bw):
    e = symmetric_encoding(*rng, bitwidth=bw)
    assert e.offset == -(1 << (bw - 1))
    assert e.max == pytest.approx(-e.min * ((1 << (bw - 1)) - 1) / (1 << (bw - 1)))


@settings(max_examples=200, deadline=None)
@given(ranges(), st.floats(0.0, 1e3, allow_nan=False))
def test_encodings_monotone_in_range(rng, grow):
    a = tf_encoding(*rng)
    b = tf_encoding(rng[0] - grow, rng[1] + grow)
    assert b.scale >= a.scale * (1 - 1e-12)


def test_eps_scale_min_range_matches_libpymo():
    # docs §2.2: TF on zeros(10) -> scale FLT_EPS, max 255 * FLT_EPS
    e = tf_encoding(0.0, 0.0, min_range=None)
    assert e.scale == pytest.approx(1.1920928955078125e-07)
    assert e.max == pytest.approx(3.039836883544922e-05)
    # symmetric: a dead channel gets the FLT_EPS step (aimet exports 1.19e-7, docs §5.2)
    s = symmetric_encoding(-1e-9, 1e-9, min_range=None)
    assert (s.scale, s.offset) == (pytest.approx(1.1920928955078125e-07), -128)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("mode", ["half_away", "half_even"])
def test_per_channel_fake_quant_equals_quantize_dequantize_per_slice(axis, mode):
    rng = np.random.default_rng(axis)
    shape = [1, 1, 1, 1]
    shape[axis] = (5, 6)[axis]
    w = (rng.normal(size=(5, 6, 3, 3)) * rng.uniform(0.01, 3.0, shape)).astype(np.float32)
    slices = np.moveaxis(w, axis, 0)  # (C, ...) one slice per channel
    encs = [symmetric_encoding(float(s.min()), float(s.max()), 8) for s in slices]
    got = np.moveaxis(fake_quant_per_channel(w, encs, axis, mode), axis, 0)
    for c, enc in enumerate(encs):
        want = dequantize(quantize(slices[c], enc, mode), enc).astype(np.float32)
        np.testing.assert_array_equal(got[c], want)
