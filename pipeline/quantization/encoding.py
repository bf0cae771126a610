"""Encoding math: pure functions from observed statistics to QNN encodings, and fake quantization.

Convention (QNN, docs §1.1-§1.3), stated once here and used everywhere in fieldcal::

    real = scale * (q + offset),   q in [0, 2^bw - 1],   offset <= 0 for ranges containing 0

Quantize: clamp x in float to [enc_min, enc_max], t = x / scale - offset, round t (half away from
zero like libpymo's C ``round``, or half to even as a knob). ONNX's ``zero_point`` is ``-offset``;
the conversion lives in :func:`onnx_zero_point` and nowhere else.

All encoding arithmetic runs in float64 on Python floats, as libpymo does on doubles.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

RoundMode = Literal["half_away", "half_even"]
SymmetricRule = Literal["absmax", "max_of_both"]
FLT_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Encoding:
    """One quantization grid. ``offset`` follows QNN's sign (real = scale * (q + offset))."""

    bitwidth: int
    scale: float
    offset: int
    min: float
    max: float
    symmetric: bool

    @property
    def steps(self) -> int:
        return (1 << self.bitwidth) - 1


def round_half_away(v: float) -> float:
    """C ``round``: halves go away from zero (libpymo, docs §1.3)."""
    return math.copysign(math.floor(abs(v) + 0.5), v)


def _guard_inf(v: float) -> float:
    if v == math.inf:
        return FLT_MAX
    if v == -math.inf:
        return -FLT_MAX
    return v


FLT_EPS = float(np.finfo(np.float32).eps)
MinRange = float | None  # None: AIMET's rule, scale >= FLT_EPS instead of a minimum width


def _include_zero(mn: float, mx: float, min_range: MinRange, steps: int) -> tuple[float, float]:
    """Spec §2.2 steps 1-3: range contains 0, has width >= min_range, and is finite.

    ``min_range=None`` is AIMET's rule (docs §2.2): the step must be at least FLT_EPS,
    i.e. the width at least ``steps * FLT_EPS``; symmetric encodings floor the scale instead.
    """
    if math.isnan(mn) or math.isnan(mx):
        raise ValueError(f"statistics contain NaN (min={mn}, max={mx})")
    if mn > mx:
        raise ValueError(f"min {mn} > max {mx}: no statistics were collected")
    mn = _guard_inf(min(0.0, mn))
    mx = _guard_inf(max(0.0, mx))
    mx = max(mx, mn + (steps * FLT_EPS if min_range is None else min_range))
    return mn, mx


def tf_encoding(mn: float, mx: float, bitwidth: int = 8, min_range: MinRange = 0.01) -> Encoding:
    """Asymmetric min-max ("tf") encoding with zero nudging (docs §2.3, libpymo).

    >>> e = tf_encoding(-1.8, 0.5)
    >>> e.offset, round(e.scale, 10)
    (-200, 0.0090196078)
    """
    steps = (1 << bitwidth) - 1
    mn, mx = _include_zero(mn, mx, min_range, steps)
    scale = (mx - mn) / steps
    if mn < 0.0 < mx:
        z = min(max(round_half_away(-mn / scale), 0.0), float(steps))
        offset = -int(z)
        enc_min = scale * offset
        enc_max = mx - mn + enc_min
        if z == steps:  # zero is the top of the grid; keep float noise from pushing max below it
            enc_max = max(enc_max, 0.0)
    else:
        offset = int(round_half_away(mn / scale))
        enc_min, enc_max = mn, mx
    return Encoding(bitwidth, scale, offset, enc_min, enc_max, symmetric=False)


def symmetric_encoding(
    mn: float,
    mx: float,
    bitwidth: int = 8,
    min_range: MinRange = 0.01,
    *,
    strict: bool = False,
    unsigned: bool = False,
    rule: SymmetricRule = "absmax",
) -> Encoding:
    """Symmetric encoding (docs §3.1): 8-bit grid -128..127 as q in 0..255 with offset -128.

    ``strict`` uses -127..127; ``unsigned`` sends all-non-negative data to the asymmetric path
    (offset 0, QAIRT ``unsignedsymmetric``); ``rule="max_of_both"`` is aimet_torch v2's
    ``scale = max(max/127, -min/128)`` (docs §3.2).
    """
    if unsigned and mn >= 0.0:
        return tf_encoding(mn, mx, bitwidth, min_range)
    steps = (1 << bitwidth) - 1
    n = steps - 1 if strict else steps
    pos = n // 2
    neg = (n + 1) // 2  # ceil(n / 2)
    if min_range is None:
        mn, mx = _include_zero(mn, mx, 0.0, steps)
        scale = max(abs(mn), abs(mx)) / pos if rule == "absmax" else max(mx / pos, -mn / neg)
        scale = max(scale, FLT_EPS)
    else:
        mn, mx = _include_zero(mn, mx, min_range, steps)
        scale = max(abs(mn), abs(mx)) / pos if rule == "absmax" else max(mx / pos, -mn / neg)
    offset = -neg
    return Encoding(bitwidth, scale, offset, scale * offset, scale * pos, symmetric=True)


def adjusted_encoding(
    mn: float, mx: float, bitwidth: int = 8, min_range: MinRange = 0.01
) -> Encoding:
    """QNN's "adjusted" weight quantizer, as fieldcal interprets its documentation.

    QNN publishes no rule, only that it "uses adjusted min or max of the data", that "the max
    will be expanded or the min will be decreased if necessary" and that it "still enforces a
    minimum range and ensures 0.0 is exactly quantizable" (docs §5.3). fieldcal's reading: the
    ``tf`` grid, but where zero nudging would clip the true min or max, the zero point is
    rounded away from the clipped side and, if still needed, the step grows until both ends are
    inside. Parity with QNN is unverified and reports say so.
    """
    steps = (1 << bitwidth) - 1
    lo, hi = _include_zero(mn, mx, min_range, steps)
    scale = (hi - lo) / steps
    if not lo < 0.0 < hi:
        return tf_encoding(mn, mx, bitwidth, min_range)
    for _ in range(64):
        z = min(max(math.ceil(-lo / scale), 0), steps)  # decrease the min rather than clip it
        enc_min = -z * scale
        enc_max = enc_min + steps * scale
        if enc_max >= hi:
            return Encoding(bitwidth, scale, -z, enc_min, enc_max, symmetric=False)
        scale = (hi - enc_min) / steps  # expand the max
    return Encoding(bitwidth, scale, -z, enc_min, enc_max, symmetric=False)


def from_min_max(
    bitwidth: int, enc_min: float, enc_max: float, symmetric: bool, min_range: float = 0.01
) -> Encoding:
    """Recompute scale and offset from a stored (bitwidth, min, max, is_symmetric), as QNN does
    with an overrides file (docs §9.5). An already nudged range reproduces itself."""
    if symmetric:
        # A stored symmetric range is [-ceil(N/2) * scale, floor(N/2) * scale]: its width is
        # N * scale. Re-deriving from max(|min|, |max|) would inflate the scale by 128/127.
        steps = (1 << bitwidth) - 1
        scale = max(enc_max - enc_min, min_range) / steps
        neg = (steps + 1) // 2
        return Encoding(bitwidth, scale, -neg, -neg * scale, (steps // 2) * scale, True)
    return tf_encoding(enc_min, enc_max, bitwidth, min_range)


def from_scale_offset(bitwidth: int, scale: float, offset: int, symmetric: bool) -> Encoding:
    """Reconstruct min/max from scale and offset (AIMET 1.0.0 has no min/max; docs §9.3)."""
    steps = (1 << bitwidth) - 1
    enc_min = scale * offset
    enc_max = scale * (steps // 2) if symmetric else scale * (offset + steps)
    return Encoding(bitwidth, scale, offset, enc_min, enc_max, symmetric)


def onnx_zero_point(enc: Encoding) -> int:
    """ONNX QuantizeLinear zero point for uint storage: ``zero_point = -offset``."""
    return -enc.offset


def _round(t: NDArray[np.float64] | NDArray[np.float32], mode: RoundMode) -> NDArray[np.float64]:
    if mode == "half_even":
        return np.rint(t).astype(np.float64)
    return (np.sign(t) * np.floor(np.abs(t) + 0.5)).astype(np.float64)


def quantize(
    x: NDArray[np.floating], enc: Encoding, mode: RoundMode = "half_away"
) -> NDArray[np.int64]:
    """q = round(clamp(x, min, max) / scale - offset), clipped to [0, 2^bw - 1]."""
    xc = np.clip(np.asarray(x, np.float64), enc.min, enc.max)
    q = _round(xc / enc.scale - enc.offset, mode)
    return np.clip(q, 0, enc.steps).astype(np.int64)


def dequantize(q: NDArray[np.integer], enc: Encoding) -> NDArray[np.float64]:
    return enc.scale * (np.asarray(q, np.float64) + enc.offset)


def fake_quant_per_channel(
    w: NDArray[np.float32], encs: list[Encoding], axis: int, mode: RoundMode = "half_away"
) -> NDArray[np.float32]:
    """Quantize then dequantize ``w`` with one encoding per slice along ``axis``.

    Element for element the same arithmetic as :func:`quantize` then :func:`dequantize`, with
    each channel's (min, max, scale, offset, steps) broadcast along ``axis``.
    """
    shape = [1] * w.ndim
    shape[axis] = len(encs)

    def per_channel(values: list[float]) -> NDArray[np.float64]:
        return np.asarray(values, np.float64).reshape(shape)

    lo = per_channel([e.min for e in encs])
    hi = per_channel([e.max for e in encs])
    scale = per_channel([e.scale for e in encs])
    offset = per_channel([e.offset for e in encs])
    steps = per_channel([e.steps for e in encs])
    xc = np.clip(np.asarray(w, np.float64), lo, hi)
    q = np.clip(_round(xc / scale - offset, mode), 0, steps)
    return (scale * (q + offset)).astype(np.float32)


def int32_bias_encoding(scale_in: float, scale_w: float) -> Encoding:
    """32-bit bias: scale = input scale x weight scale, zero point 0 (docs §7.1).

    Signed int32 storage with zero point 0 is, in this module's unsigned convention, the
    symmetric grid with offset -2^31 (as 8-bit symmetric is offset -128).
    """
    scale = scale_in * scale_w
    if scale <= 0.0:
        scale = sys.float_info.min
    return Encoding(32, scale, -(2**31), -scale * 2**31, scale * (2**31 - 1), symmetric=True)


def fake_quant_int32_bias(b: NDArray[np.float32], encs: list[Encoding]) -> NDArray[np.float32]:
    """Round each bias to its int32 grid (round half away, saturating) and back."""
    scale = np.array([e.scale for e in encs], np.float64)
    t = np.asarray(b, np.float64) / scale
    q = np.clip(np.copysign(np.floor(np.abs(t) + 0.5), t), -(2.0**31), 2.0**31 - 1)
    out: NDArray[np.float32] = (q * scale).astype(np.float32)
    return out
