"""Single-pass reductions over activation tensors, in C (``pipeline/native/_kernels.c``).

Calibration and evaluation read every activation of every image; numpy needs one pass (and
often a temporary) per quantity, and its ``bincount`` alone costs more than the model. Each
kernel here reads its tensors once and computes everything the caller needs from them.

The C file is compiled when the package is installed (``setup.py``) and loaded with ctypes,
which releases the GIL for the call: callers run one tensor per task on every core
(:func:`each`). Plain C rather than a JIT keeps the process small: numba's LLVM took about
105 MB of resident memory, as much as half of a calibration run's budget over the float model.

Every kernel is deterministic and independent of the number of threads: sums run in a fixed
order over eight fixed lanes, counts are integers, and callers parallelise across tensors,
never inside one. Arithmetic that must match a reference (the histogram's bin index, libpymo's
``floor((x - start) / width)`` in float32; the simulation graph's fake-quant chain) is written
in the same precision and order, compiled without fast-math or fused multiply-add.

Kernels take 1-D contiguous float32 arrays (``ravel()`` of a C-contiguous tensor is free).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

T = TypeVar("T")
R = TypeVar("R")

_F32 = ctypes.POINTER(ctypes.c_float)
_I32 = ctypes.POINTER(ctypes.c_int32)
_I64 = ctypes.POINTER(ctypes.c_int64)
_F64 = ctypes.POINTER(ctypes.c_double)


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="fieldcal-kern")


def each(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(item) for item in items]`` on every core: the kernels release the GIL, so one
    tensor per task runs in parallel; results keep the items' order."""
    return list(_pool().map(fn, items))


@functools.cache
def _lib() -> ctypes.CDLL:
    here = Path(__file__).parent
    found = [here / f"_kernels{s}" for s in importlib.machinery.EXTENSION_SUFFIXES]
    path = next((p for p in found if p.is_file()), None)
    if path is None:
        raise ImportError(
            f"fieldcal's compiled kernels are missing from {here} (no _kernels*.so): install "
            "the package with pip (`pip install -e .` in a checkout), which compiles "
            "pipeline/native/_kernels.c; that needs a C compiler (gcc or clang)"
        )
    lib = ctypes.CDLL(str(path))
    lib.fc_minmax.argtypes = [_I32, ctypes.c_int64, _I32]
    lib.fc_minmax.restype = None
    lib.fc_histogram.argtypes = [
        _F32, ctypes.c_int64, ctypes.c_float, ctypes.c_float, ctypes.c_int32, _I64, _I32,
    ]  # fmt: skip
    lib.fc_histogram.restype = ctypes.c_int
    lib.fc_compare.argtypes = [
        _F32, ctypes.c_int64, ctypes.c_float, ctypes.c_float, ctypes.c_int32,
        ctypes.POINTER(_F32), _I32, _F64, _F64, ctypes.c_int64, ctypes.c_int32, _F32,
    ]  # fmt: skip
    lib.fc_compare.restype = None
    return lib


def _f32(x: NDArray[np.float32]) -> ctypes._Pointer[ctypes.c_float]:
    if x.dtype != np.float32 or x.ndim != 1 or not x.flags.c_contiguous:
        raise TypeError(f"kernels take 1-D contiguous float32 arrays, not {x.dtype} {x.shape}")
    return x.ctypes.data_as(_F32)


_INF_KEY = 0x7F800000  # order key of +inf; NaNs sort beyond the infinities
_NEG_INF_KEY = -0x7F800001  # order key of -inf


def _unkey(key: int) -> float:
    b = np.int32(key)
    return float(np.array([b ^ ((b >> 31) & np.int32(0x7FFFFFFF))], np.int32).view(np.float32)[0])


def _from_keys(keys: NDArray[np.int32]) -> tuple[float, float, bool]:
    kmin, kmax = int(keys[0]), int(keys[1])
    has_nan = kmax > _INF_KEY or kmin < _NEG_INF_KEY
    return _unkey(kmin), _unkey(kmax), has_nan


def minmax(x: NDArray[np.float32]) -> tuple[float, float, bool]:
    """(min, max, whether x holds a NaN) of a non-empty float32 array, in one pass: values
    compared through the integer key ``b ^ ((b >> 31) & 0x7FFFFFFF)`` of their bits ``b``,
    which orders floats like their values and vectorises."""
    _f32(x)
    keys = np.empty(2, np.int32)
    _lib().fc_minmax(x.view(np.int32).ctypes.data_as(_I32), x.size, keys.ctypes.data_as(_I32))
    return _from_keys(keys)


def histogram(x: NDArray[np.float32], start: float, width: float, bins: int) -> NDArray[np.int64]:
    """Counts of ``x`` in ``bins`` bins of ``width`` from ``start``: bin index
    ``floor((x - start) / width)`` in float32, libpymo's; values outside (and NaNs) are dropped.
    Eight interleaved sub-histograms keep runs of equal values (ReLU zeros) from serialising
    the increments."""
    return _histogram(x, start, width, bins, None)


def minmax_histogram(
    x: NDArray[np.float32], start: float, width: float, bins: int
) -> tuple[tuple[float, float, bool], NDArray[np.int64]]:
    """:func:`minmax` and :func:`histogram` of a non-empty ``x`` from one read of it."""
    keys = np.empty(2, np.int32)
    counts = _histogram(x, start, width, bins, keys)
    return _from_keys(keys), counts


def _histogram(
    x: NDArray[np.float32], start: float, width: float, bins: int, keys: NDArray[np.int32] | None
) -> NDArray[np.int64]:
    counts = np.empty(bins, np.int64)
    kp = keys.ctypes.data_as(_I32) if keys is not None else None
    if _lib().fc_histogram(_f32(x), x.size, start, width, bins, counts.ctypes.data_as(_I64), kp):
        raise MemoryError(f"no memory for a {bins}-bin histogram")
    return counts


@dataclass(frozen=True)
class FakeQuant:
    """Fake-quantize a compared tensor before comparing it: the simulation graph's chain
    (:func:`pipeline.quantization.simulate._fq_nodes`) ``clip(y, min, max) / scale + shift``, then
    floor (``shift = 0.5 - offset``, half away) or round half to even (``shift = -offset``),
    ``+ offset``, ``* scale``, in float32."""

    min: float
    max: float
    scale: float
    offset: float
    half_even: bool

    def params(self) -> list[float]:
        shift = -self.offset if self.half_even else 0.5 - self.offset
        return [self.min, self.max, self.scale, shift, self.offset, float(self.half_even)]


@dataclass(frozen=True)
class Sums:
    """One compared tensor against its reference: sum of e² and of y² (float64), max |e|, with
    e = x - y taken in float32 (exact for nearby values)."""

    see: float
    syy: float
    max_abs: float


@dataclass(frozen=True)
class Compared:
    """:func:`compare`'s result: the reference's sum of x² (float64), count of x outside
    [lo, hi], max |x|, the sums of each compared tensor, in order, and the largest |x| of the
    strided sample (``x[::top_step]``), largest first."""

    sxx: float
    outside: int
    peak: float
    sums: list[Sums]
    top: NDArray[np.float32]


def compare(
    x: NDArray[np.float32],
    lo: float,
    hi: float,
    ys: Sequence[NDArray[np.float32]] = (),
    fake_quant: Sequence[FakeQuant | None] | None = None,
    *,
    top: int = 0,
    top_step: int = 1,
) -> Compared:
    """One pass over reference ``x`` and every tensor compared with it (each ``y`` the same size;
    ``fake_quant[v]``, where given, applied to ``ys[v]`` on the fly): ``x`` is read once, a
    block at a time, and each ``y`` once. The same pass keeps the ``top`` largest ``|x|`` of
    ``x[::top_step]`` (NaN above +inf, as a sort places it; zeros where the sample is shorter).
    """
    nv = len(ys)
    if top < 0 or top_step < 1:
        raise ValueError("compare: top must be >= 0 and top_step >= 1")
    fqs = list(fake_quant) if fake_quant is not None else [None] * nv
    if len(fqs) != nv or any(y.size != x.size for y in ys):
        raise ValueError("compare: one fake-quant slot and the reference's size per tensor")
    ptrs = (_F32 * max(nv, 1))(*[_f32(y) for y in ys])
    flags = np.array([int(f is not None) for f in fqs] or [0], np.int32)
    params = np.array(
        [p for f in fqs for p in (f.params() if f is not None else [0.0] * 6)] or [0.0], np.float64
    )
    out = np.empty(3 + 3 * nv, np.float64)
    tops = np.zeros(max(top, 1), np.float32)
    _lib().fc_compare(
        _f32(x), x.size, lo, hi, nv, ptrs, flags.ctypes.data_as(_I32),
        params.ctypes.data_as(_F64), out.ctypes.data_as(_F64), top_step, top, _f32(tops),
    )  # fmt: skip
    sums = [Sums(*map(float, out[3 + 3 * v : 6 + 3 * v])) for v in range(nv)]
    return Compared(float(out[0]), int(out[1]), float(out[2]), sums, tops[:top])
