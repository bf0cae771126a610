"""Single-pass reductions over activation tensors, compiled with numba.

Calibration and evaluation read every activation of every image; numpy needs one pass (and
often a temporary) per quantity, and its ``bincount`` alone costs more than the model. Each
kernel here reads its tensors once and computes everything the caller needs from them.

Every kernel is deterministic and independent of the number of threads: sums run in a fixed
order over eight fixed lanes (so the compiler can vectorise without reassociating), counts are
integers, and callers parallelise across tensors, never inside one. Arithmetic that must match
a reference (the histogram's bin index, libpymo's ``floor((x - start) / width)`` in float32) is
written in the same precision and order; no fast-math.

Kernels take 1-D contiguous float32 arrays (``ravel()`` of a C-contiguous tensor is free).
numba is imported, and each kernel compiled (or loaded from numba's on-disk cache), on first
use: stages that need no kernel do not pay for it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

LANES = 8
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
R = TypeVar("R")


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="fieldcal-kern")


def each(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(item) for item in items]`` on every core: the kernels release the GIL, so one
    tensor per task runs in parallel; results keep the items' order."""
    return list(_pool().map(fn, items))


def _jit(fn: F) -> F:
    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        return compiled()(*args)

    @functools.cache
    def compiled() -> Callable[..., Any]:
        from numba import njit

        return njit(nogil=True, cache=True, boundscheck=False)(fn)

    return call  # type: ignore[return-value]


_INF_KEY = 0x7F800000  # order key of +inf; NaNs sort beyond the infinities
_NEG_INF_KEY = -0x7F800001  # order key of -inf


@_jit
def _key_minmax(bits: NDArray[np.int32]) -> tuple[int, int]:
    """Min and max of float32 values given as their bit patterns, compared as integers: the
    key ``b ^ ((b >> 31) & 0x7FFFFFFF)`` orders floats like their values, and integer min/max
    vectorise without fast-math."""
    kmin = np.int32(2147483647)
    kmax = np.int32(-2147483648)
    for i in range(bits.size):
        b = bits[i]
        key = b ^ ((b >> 31) & np.int32(0x7FFFFFFF))
        kmin = min(kmin, key)
        kmax = max(kmax, key)
    return int(kmin), int(kmax)


def _unkey(key: int) -> float:
    b = np.int32(key)
    return float(np.array([b ^ ((b >> 31) & np.int32(0x7FFFFFFF))], np.int32).view(np.float32)[0])


def minmax(x: NDArray[np.float32]) -> tuple[float, float, bool]:
    """(min, max, whether x holds a NaN) of a non-empty float32 array, in one pass."""
    kmin, kmax = _key_minmax(x.view(np.int32))
    has_nan = kmax > _INF_KEY or kmin < _NEG_INF_KEY
    return _unkey(kmin), _unkey(kmax), has_nan


@_jit
def histogram(x: NDArray[np.float32], start: float, width: float, bins: int) -> NDArray[np.int64]:
    """Counts of ``x`` in ``bins`` bins of ``width`` from ``start``: bin index
    ``floor((x - start) / width)`` in float32, libpymo's; values outside (and NaNs) are dropped.

    Bin indices are computed a block at a time (vectorised; floor as truncation corrected for
    negatives, exact for the clamped range), then counted into four interleaved int32
    sub-histograms that stay in L1: runs of equal values (ReLU zeros) would otherwise make
    every increment wait for the previous one."""
    sub = np.zeros((4, bins + 2), np.int32)
    s = np.float32(start)
    w = np.float32(width)
    low = np.float32(-1.0)
    top = np.float32(bins)
    block = 2048
    idx = np.empty(block, np.int32)
    n = x.size
    full = n - n % block
    for b0 in range(0, full + block, block):
        m = block if b0 < full else n - full
        for i in range(m):
            q = (x[b0 + i] - s) / w
            q = q if q > low else low  # NaN lands here, below the support
            q = q if q < top else top
            c = np.int32(q)
            c -= np.int32(np.float32(c) > q)
            idx[i] = c + 1
        for i in range(m):
            sub[i & 3, idx[i]] += 1
    counts: NDArray[np.int64] = sub[0].astype(np.int64) + sub[1] + sub[2] + sub[3]
    return counts[1 : bins + 1].copy()


@_jit
def reference_sums(x: NDArray[np.float32], lo: float, hi: float) -> tuple[float, int]:
    """(sum of x² in float64, count of x outside [lo, hi])."""
    acc = np.zeros(LANES)
    out = np.zeros(LANES, np.int64)
    a = np.float32(lo)
    b = np.float32(hi)
    n = x.size
    m = n - n % LANES
    for i in range(0, m, LANES):
        for k in range(LANES):
            v = x[i + k]
            d = np.float64(v)
            acc[k] += d * d
            if v < a or v > b:
                out[k] += 1
    for i in range(m, n):
        v = x[i]
        acc[0] += np.float64(v) * np.float64(v)
        if v < a or v > b:
            out[0] += 1
    return float(acc.sum()), int(out.sum())


@_jit
def difference_sums(x: NDArray[np.float32], y: NDArray[np.float32]) -> tuple[float, float, float]:
    """For reference ``x`` and test ``y``: (sum of e², sum of y², max |e|), e = x - y taken in
    float32 (exact for nearby values) and squared and summed in float64."""
    see = np.zeros(LANES)
    syy = np.zeros(LANES)
    worst = np.zeros(LANES, np.float32)
    n = x.size
    m = n - n % LANES
    for i in range(0, m, LANES):
        for k in range(LANES):
            yv = y[i + k]
            e = x[i + k] - yv
            d = np.float64(e)
            f = np.float64(yv)
            see[k] += d * d
            syy[k] += f * f
            a = abs(e)
            if a > worst[k]:
                worst[k] = a
    for i in range(m, n):
        yv = y[i]
        e = x[i] - yv
        see[0] += np.float64(e) * np.float64(e)
        syy[0] += np.float64(yv) * np.float64(yv)
        if abs(e) > worst[0]:
            worst[0] = abs(e)
    return float(see.sum()), float(syy.sum()), float(worst.max())


@_jit
def fake_quant_difference_sums(
    x: NDArray[np.float32],
    y: NDArray[np.float32],
    lo: float,
    hi: float,
    scale: float,
    shift: float,
    offset: float,
    half_even: bool,
) -> tuple[float, float, float]:
    """:func:`difference_sums` of ``x`` and fake-quantized ``y``, the fake-quant applied on the
    fly with the float32 operations, in the order, of the graph's chain
    (:func:`pipeline.quantize.simulate._fq_nodes`): ``clip(y, lo, hi) / scale + shift``, then
    ``floor`` (``shift = 0.5 - offset``, half away) or round-half-even (``shift = -offset``),
    ``+ offset``, ``* scale``. Saves the graph one fake-quant chain per compared tensor."""
    a = np.float32(lo)
    b = np.float32(hi)
    s = np.float32(scale)
    h = np.float32(shift)
    o = np.float32(offset)
    see = np.zeros(LANES)
    syy = np.zeros(LANES)
    worst = np.zeros(LANES, np.float32)
    n = x.size
    for i in range(n):
        k = i & (LANES - 1)
        c = y[i]
        c = a if c < a else c
        c = b if c > b else c
        t = c / s + h
        q = np.float32(np.rint(t)) if half_even else np.float32(np.floor(t))
        yq = (q + o) * s
        e = x[i] - yq
        d = np.float64(e)
        f = np.float64(yq)
        see[k] += d * d
        syy[k] += f * f
        m = abs(e)
        if m > worst[k]:
            worst[k] = m
    return float(see.sum()), float(syy.sum()), float(worst.max())
