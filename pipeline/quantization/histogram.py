"""Histogram statistics and the encodings built on them: ``enhanced`` (SQNR search) and
``percentile``, following libpymo (AIMET's C++ core, docs §4).

libpymo keeps, per tensor, a PDF whose support is fixed by the **first non-all-zero batch**;
later values outside it are dropped, and the PDF is the running mean of per-batch normalised
histograms. That makes the statistics depend on the order of the calibration set, so fieldcal
feeds images in input-list order and the result equals a fresh run over the same ordered set.

Where this differs from older libpymo sources (docs §4.1, §11): the binary measured,
aimet-onnx 2.42's ``BlockTensorQuantizer``, was measured here (``getStatsHistogram``) to use
3 x 512 = 1536 bins of width ``(max - min) / 512`` whose edges are whole multiples of the
width, with the first batch's min in bin 512, and ``floor`` binning; not 512 bins over a 3x
range about the centre with ``round`` binning. With this support libpymo's own reference
vectors are all reproduced (tests/test_histogram.py); with §4.1's they are not.

Candidate grids and costs are computed as libpymo's ``float`` instantiation does (float32
candidates, float64 PDF and costs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from pipeline.native import kernels
from pipeline.quantization.encoding import Encoding, round_half_away, tf_encoding

BASE_BINS = 512
PDF_SIZE = 3 * BASE_BINS
GAMMA = 3.0
F32 = np.float32


def _f(v: float) -> float:
    """Round to float32 and back: one libpymo ``float`` operation."""
    return float(F32(v))


def _c_round(v: NDArray[np.float32]) -> NDArray[np.float32]:
    return np.sign(v) * np.floor(np.abs(v) + F32(0.5))


@dataclass
class Pdf:
    """libpymo's per-tensor PDF: fixed support on first non-zero batch, running-mean PDF."""

    x_left: NDArray[np.float64] | None = None  # float32 values stored as float64
    pdf: NDArray[np.float64] = field(default_factory=lambda: np.zeros(PDF_SIZE))
    iterations: int = 0
    seen: bool = False  # any batch at all, including all-zero ones
    min: float = math.inf  # exact running min/max of everything seen (for reports)
    max: float = -math.inf
    bucket: float = 0.0  # the bin width the support was built with

    def set_support(self, start: float, bucket: float) -> None:
        self.bucket = bucket
        self.x_left = start + np.arange(PDF_SIZE, dtype=np.float64) * bucket
        self.pdf = np.zeros(PDF_SIZE)
        self.iterations = 0

    def update(self, x: NDArray[np.floating]) -> None:
        """Fold one batch in (libpymo ``UpdatePdfSigned``)."""
        data = np.asarray(x, dtype=F32).ravel()
        self.seen = True
        if data.size == 0:
            return
        lo, hi = float(data.min()), float(data.max())
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        if self.x_left is None:
            if lo == 0 and hi == 0:
                return  # an all-zero batch cannot initialise the support
            self.set_support(*support_of(lo, hi))
        assert self.x_left is not None
        counts = bin_counts(data, float(self.x_left[0]), self.bucket)
        prob = counts.astype(np.float64) / float(data.size)
        self.pdf = (self.pdf * self.iterations + prob) / (self.iterations + 1)
        self.iterations += 1

    def occupied_range(self, min_range: float | None = 0.01) -> tuple[float, float]:
        """libpymo ``findOriginalRange``: left edges of the first and last non-empty bins,
        widened to contain 0 and to at least ``min_range`` (libpymo's MIN_RANGE 0.01 when
        None)."""
        assert self.x_left is not None
        min_range = 0.01 if min_range is None else min_range
        nz = np.flatnonzero(self.pdf > 0)
        lo = float(self.x_left[nz[0]]) if nz.size else float(self.x_left[0])
        hi_idx = [i for i in nz[::-1] if i > 0]
        hi = float(self.x_left[hi_idx[0]]) if hi_idx else float(self.x_left[-1])
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        return lo, max(hi, _f(lo + min_range))


def support_of(lo: float, hi: float) -> tuple[float, float]:
    """(first left edge, bin width) of the PDF initialised on a batch with this min and max.

    As measured on libpymo (aimet-onnx 2.42, ``getStatsHistogram``): the width is
    ``(max - min) / 512`` in float32 (``max = min + 0.01`` for a constant batch); edges are
    whole multiples of the width; the support has 3 x 512 bins starting 768 widths below the
    bin of the range's centre: the observed range with one range-width of margin each side.
    """
    lo32, hi32 = F32(lo), F32(hi)
    if lo32 == hi32:
        hi32 = F32(lo32 + F32(0.01))
    width = F32((hi32 - lo32) / F32(BASE_BINS))
    center = F32((lo32 + hi32) / F32(2))
    # the unaligned start, then snapped down to a multiple of the width, in float32: this
    # reproduced libpymo's first edge on all 128 tensors probed (incl. relu outputs, min 0)
    start = F32(center - F32(F32(PDF_SIZE // 2) * width))
    k0 = math.floor(float(F32(start / width)))
    return k0 * float(width), float(width)


def bin_counts(x: NDArray[np.floating], start: float, width: float) -> NDArray[np.int64]:
    """Counts per bin, index = floor((x - start) / width) in float32; values outside the
    support are dropped (libpymo keeps the support of the first non-zero batch). One pass,
    no copy (:func:`pipeline.native.kernels.histogram`); NaNs are not counted."""
    flat = np.ascontiguousarray(x, dtype=F32).ravel()
    counts: NDArray[np.int64] = kernels.histogram(flat, start, width, PDF_SIZE)
    return counts


def _zero_data_encoding(bitwidth: int) -> Encoding:
    """Only all-zero data seen: libpymo's valid [-1, 1] encoding covering 0."""
    steps = (1 << bitwidth) - 1
    scale = 2.0 / steps
    offset = math.floor(-1.0 / scale)
    lo = offset * scale
    return Encoding(bitwidth, scale, offset, lo, lo + steps * scale, symmetric=False)


def _costs(
    pdf: Pdf, bitwidth: int, deltas: NDArray[np.float64], offsets: NDArray[np.int64]
) -> NDArray[np.float64]:
    """GAMMA * saturation MSE + rounding MSE of every (delta, offset) candidate, over bin
    midpoints (libpymo ``_quantAndSatCost``; the half-bin midpoint shift is kept as is)."""
    assert pdf.x_left is not None
    steps = float((1 << bitwidth) - 1)
    start = float(pdf.x_left[0])
    step = pdf.bucket
    mids = start + np.arange(PDF_SIZE) * step + step / 2  # (B,)
    lo = deltas * offsets  # (K,)
    hi = deltas * steps + lo
    i_lo = np.clip(np.floor((lo - start) / step), 0, PDF_SIZE - 1).astype(np.int64)
    i_hi = np.clip(np.floor((hi - start) / step), 0, PDF_SIZE - 1).astype(np.int64)
    idx = np.arange(PDF_SIZE)[None, :]  # (1,B)
    p = pdf.pdf[None, :]
    mid_lo = mids[i_lo][:, None]
    mid_hi = mids[i_hi][:, None]
    sat = np.where(idx < i_lo[:, None], p * (mids[None, :] - mid_lo) ** 2, 0.0).sum(1)
    sat += np.where(idx >= i_hi[:, None], p * (mids[None, :] - mid_hi) ** 2, 0.0).sum(1)
    d = deltas[:, None]
    o = offsets[:, None].astype(np.float64)
    q = np.sign(mids[None, :] / d - o) * np.floor(np.abs(mids[None, :] / d - o) + 0.5)
    err = mids[None, :] - d * (q + o)
    inside = (idx >= i_lo[:, None]) & (idx < i_hi[:, None])
    quant = np.where(inside, p * err**2, 0.0).sum(1)
    return np.asarray(GAMMA * sat + quant)


def _asymmetric_candidates(lo: float, hi: float, steps: float) -> list[tuple[float, int]]:
    obs_delta = _f((hi - lo) / steps)
    obs_offset = int(round_half_away(_f(lo / obs_delta)))
    obs_min = _f(obs_delta * obs_offset)
    obs_max = _f(obs_min + _f(obs_delta * steps))
    out: list[tuple[float, int]] = []
    for k in range(1, 18):  # f = k/16 is exact in float: 17 deltas
        base = _f(k / 16 * obs_delta)
        for i in range(21):
            offset = int(-steps + steps / 20.0 * i)  # C++ truncation toward zero
            t_min = _f(base * offset)
            t_max = _f(t_min + _f(base * steps))
            if t_min < obs_min and t_max > obs_max:
                continue
            t_min, t_max = max(obs_min, t_min), min(obs_max, t_max)
            # Each (delta, offset) pair starts from the grid's delta. (Older libpymo sources
            # updated the loop's delta in place; aimet-onnx 2.42 measurably does not.)
            delta = _f((t_max - t_min) / steps)
            if delta <= 0:
                continue
            out.append((delta, int(round_half_away(_f(t_min / delta)))))
    out.append((obs_delta, obs_offset))
    return out


def _symmetric_candidates(
    lo: float, hi: float, steps: float, unsigned: bool
) -> list[tuple[float, int]]:
    if lo == 0.0 and unsigned:
        delta_max, offset = _f(hi / steps), 0
    else:
        delta_max = _f(2 * max(abs(hi), abs(lo)) / steps)
        offset = math.floor(-steps / 2)
    out = []
    f = F32(0.01)
    while f <= F32(1.01):  # float accumulator: 100 or 101 candidates, as in libpymo
        out.append((_f(float(f) * delta_max), offset))
        f = F32(f + F32(0.01))
    return out


def enhanced_encoding(
    pdf: Pdf,
    bitwidth: int = 8,
    symmetric: bool = False,
    *,
    strict: bool = False,
    unsigned: bool = False,
    min_range: float | None = 0.01,
) -> Encoding:
    """libpymo ``TfEnhancedEncodingAnalyzer``: the candidate with the least cost; the first
    minimum wins. Not nudged again: zero is on the grid because the offset is an integer."""
    if pdf.x_left is None:
        if pdf.seen:
            return _zero_data_encoding(bitwidth)
        raise ValueError("no statistics were collected")
    lo, hi = pdf.occupied_range(min_range)
    steps = float((1 << bitwidth) - 1)
    if symmetric:
        if strict:
            steps -= 1
        cands = _symmetric_candidates(lo, hi, steps, unsigned)
    else:
        cands = _asymmetric_candidates(lo, hi, steps)
    deltas = np.array([c[0] for c in cands])
    offsets = np.array([c[1] for c in cands], dtype=np.int64)
    costs = _costs(pdf, bitwidth, deltas, offsets)
    best = int(np.argmin(costs))  # argmin returns the first minimum
    delta, offset = float(deltas[best]), int(offsets[best])
    enc_min = _f(delta * offset)
    enc_max = _f(_f(delta * steps) + enc_min)
    return Encoding(bitwidth, delta, offset, enc_min, enc_max, symmetric=symmetric)


def percentile_range(
    pdf: Pdf, percentile: float, min_range: float | None = 0.01
) -> tuple[float, float]:
    """libpymo ``PercentileEncodingAnalyzer``: cut ``1 - p/100`` of the mass from each side."""
    assert pdf.x_left is not None
    if percentile >= 100.0:
        return pdf.occupied_range(min_range)
    width = pdf.bucket
    lo = float(pdf.x_left[0])
    hi = float(pdf.x_left[-1]) + width
    cdf = np.cumsum(pdf.pdf)
    left = _f(1 - _f(percentile) / 100)
    right = _f(_f(percentile) / 100)
    above = np.flatnonzero(cdf >= left)
    if above.size:
        lo = float(pdf.x_left[above[0]])
    below = np.flatnonzero(cdf < right)
    if below.size:
        i = int(below[-1])
        hi = float(pdf.x_left[i + 1]) if i + 1 < PDF_SIZE else float(pdf.x_left[i]) + width
    if lo == hi:
        hi += width
    return min(lo, 0.0), max(hi, 0.0)


def percentile_encoding(
    pdf: Pdf, percentile: float = 99.99, bitwidth: int = 8, min_range: float | None = 0.01
) -> Encoding:
    """Percentile range, then the ordinary ``tf`` computation (nudging, minimum range)."""
    if pdf.x_left is None:
        if pdf.seen:
            return _zero_data_encoding(bitwidth)
        raise ValueError("no statistics were collected")
    lo, hi = percentile_range(pdf, percentile, min_range)
    return tf_encoding(lo, hi, bitwidth, min_range)
