"""Metric math: SQNR, cosine, the per-tensor sums one comparison pass gives, and the tail sample.

Metrics (docs §10), accumulated in float64 over every element of every evaluation image:

* SQNR, reference-based (ONNX Runtime ``qdq_loss_debug``, the default):
  ``20 log10(max(||x||, eps) / max(||x - y||, eps))`` with ``x`` the float tensor, ``y`` the
  quantized one and ``eps`` = float64 machine epsilon; pooled over a scene's images it is
  ``10 log10(sum x^2 / sum (x - y)^2)``, i.e. the tensors concatenated.
* SQNR, inference-based (QNN accuracy debugger ``SQNRVerifier``): signal power from ``y``.
* cosine similarity ``sum(x y) / sqrt(sum x^2 sum y^2)`` (1.0 when both are all zero);
* MSE, max absolute error, and the clip rate: the fraction of float activations more than half
  a step outside the tensor's encoding range (nearer ones only round to the range's end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.analysis.artifacts import LayerSummary
from pipeline.native import kernels
from pipeline.quantization.encoding import Encoding, RoundMode

EPS = float(np.finfo(np.float64).eps)


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """``10 log10(signal / noise)`` on sums of squares, each floored at eps^2 (ORT's guard)."""
    return 10.0 * math.log10(max(signal_power, EPS * EPS) / max(noise_power, EPS * EPS))


def cosine(sxy: float, sxx: float, syy: float) -> float:
    if sxx == 0.0 and syy == 0.0:
        return 1.0
    if sxx == 0.0 or syy == 0.0:
        return 0.0
    return sxy / math.sqrt(sxx * syy)


def clip_bounds(e: Encoding) -> tuple[float, float]:
    """Values beyond these are clipped: more than half a step outside [min, max] (nearer ones
    only round to the range's end, an ordinary rounding error)."""
    return e.min - e.scale / 2, e.max + e.scale / 2


def fake_quant_of(e: Encoding, mode: RoundMode) -> kernels.FakeQuant:
    """The comparison kernel's fake-quant of ``e``: the simulation graph's float32 operations."""
    return kernels.FakeQuant(e.min, e.max, e.scale, float(e.offset), mode == "half_even")


@dataclass(frozen=True)
class Reference:
    """One image's float tensor and its own sums, shared by every variant compared with it."""

    x: NDArray[np.float32]  # flattened, contiguous
    sxx: float
    clipped: int  # elements more than half a step outside the encoding range

    @classmethod
    def of(cls, x: NDArray[np.float32], lo: float, hi: float) -> Reference:
        flat = np.ascontiguousarray(x, dtype=np.float32).ravel()
        c = kernels.compare(flat, lo, hi)
        return cls(flat, c.sxx, c.outside)


@dataclass(frozen=True)
class Comparison:
    """One quantized tensor against its reference: the sums one pass over both gives.

    Differences in float32 (exact for nearby values, else within 2^-24 relative), every sum
    accumulated in float64 in a fixed order (:mod:`pipeline.native.kernels`): the same on every
    machine, thread count and engine."""

    see: float  # sum (x - y)^2
    syy: float  # sum y^2
    max_abs: float
    n: int

    @classmethod
    def of(
        cls, ref: Reference, y: NDArray[np.float32], fake_quant: kernels.FakeQuant | None = None
    ) -> Comparison:
        """Against ``y``; with ``fake_quant``, against ``y`` fake-quantized as the simulation
        graph would (same float32 operations), applied inside the comparison pass."""
        flat = np.ascontiguousarray(y, dtype=np.float32).ravel()
        s = kernels.compare(ref.x, 0.0, 0.0, [flat], [fake_quant]).sums[0]
        return cls(s.see, s.syy, s.max_abs, flat.size)


@dataclass
class LayerAcc:
    """Running float64 sums for one tensor over a scene's images."""

    n: int = 0
    sxx: float = 0.0
    syy: float = 0.0
    sxy: float = 0.0
    see: float = 0.0
    max_abs: float = 0.0
    clipped: int = 0
    images: int = 0
    sum_image_sqnr: float = 0.0
    worst_sqnr: float = math.inf
    worst_image: str = ""

    def add(self, ref: Reference, c: Comparison, image: str) -> None:
        self.n += c.n
        self.sxx += ref.sxx
        self.syy += c.syy
        self.sxy += (ref.sxx + c.syy - c.see) / 2  # = sum(x y), without a third sum
        self.see += c.see
        self.max_abs = max(self.max_abs, c.max_abs)
        self.clipped += ref.clipped
        s = sqnr_db(ref.sxx, c.see)
        self.images += 1
        self.sum_image_sqnr += s
        if s < self.worst_sqnr:
            self.worst_sqnr, self.worst_image = s, image

    def sqnr(self, signal: str = "golden") -> float:
        return sqnr_db(self.sxx if signal == "golden" else self.syy, self.see)

    def pooled(self, other: LayerAcc) -> LayerAcc:
        """Signal (either kind) and noise sums of both, what a pooled SQNR needs; the rest is
        not kept."""
        return LayerAcc(
            sxx=self.sxx + other.sxx, syy=self.syy + other.syy, see=self.see + other.see
        )

    def summary(self, signal: str) -> LayerSummary:
        return LayerSummary(
            sqnr_db=self.sqnr(signal),
            sqnr_golden_db=self.sqnr("golden"),
            sqnr_inference_db=self.sqnr("inference"),
            mean_image_sqnr_db=self.sum_image_sqnr / self.images if self.images else None,
            cosine=cosine(self.sxy, self.sxx, self.syy),
            mse=self.see / max(self.n, 1),
            max_abs_error=self.max_abs,
            clip_rate=self.clipped / max(self.n, 1),
            worst_image=self.worst_image,
            worst_image_sqnr_db=self.worst_sqnr if self.n else None,
        )


# ---------------------------------------------------------------- the tail-ratio sample

TAIL_QUANTILE = 0.9999
TAIL_SAMPLES = 65_536


def upper_quantile_from_top(top: NDArray[np.float32], n: int, q: float) -> float:
    """The ``q`` quantile of ``n`` values by linear interpolation between order statistics
    (numpy's default method), in float64, from ``top``: the values' largest, largest first,
    at least :func:`top_needed` of them."""
    h = (n - 1) * q
    k = int(h)
    a = float(top[n - 1 - k])
    b = float(top[n - 2 - k]) if k + 1 < n else a
    return a + (b - a) * (h - k)


def top_needed(n: int, q: float) -> int:
    """How many of ``n`` values' largest :func:`upper_quantile_from_top` reads."""
    return n - int((n - 1) * q)


@dataclass(frozen=True)
class TailSample:
    """The tail-ratio sample of a tensor: every ``stride``-th value, 64k to 128k of them (all
    of a smaller tensor), and how many of their largest the quantile needs."""

    stride: int
    samples: int
    top: int

    @classmethod
    def of(cls, size: int) -> TailSample:
        step = max(1, size // TAIL_SAMPLES)
        samples = -(-size // step)
        return cls(step, samples, top_needed(samples, TAIL_QUANTILE))


def tail_ratio(c: kernels.Compared, size: int) -> float:
    """quantile(|x|, 0.9999) / max|x| over the strided :class:`TailSample` (an estimate for
    the advice on long tails, not a metric), from the top values the comparison pass kept."""
    if c.peak == 0.0:  # also an empty tensor
        return 1.0
    return upper_quantile_from_top(c.top, TailSample.of(size).samples, TAIL_QUANTILE) / c.peak
