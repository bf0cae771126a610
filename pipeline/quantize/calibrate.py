"""Calibration: run the float model over calibration tensors, collect statistics, compute encodings.

Two kinds of per-image statistics, both cached by the content of the ``.raw`` tensor (which
already encodes image content and preprocessing) and the model's hash, under ``<cache>/stats``:

* min/max of every tensor: they merge exactly and in any order, so a run over cached + new
  images equals a fresh run (``tf``, ``symmetric``);
* 512-bin histograms (``enhanced``, ``percentile``; :mod:`pipeline.quantize.histogram`). Their
  support is fixed, as in libpymo, by the first calibration image (in input-list order) whose
  tensor is not all zero; it is derived from the cached min/max, so histograms of unchanged
  images stay valid while the first image is unchanged. The PDF is the mean of the per-image
  PDFs taken in input-list order, so cached and fresh runs give the same bytes.

Memory is bounded by one batch of activations, never by the number of images.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pipeline.atomic import atomic_path
from pipeline.errors import DataError, NoStatisticsError
from pipeline.model import ModelView, with_minmax_outputs, with_outputs
from pipeline.params import QuantizeParams, TensorsParams
from pipeline.quantize.encoding import (
    Encoding,
    adjusted_encoding,
    symmetric_encoding,
    tf_encoding,
)
from pipeline.quantize.histogram import (
    PDF_SIZE,
    Pdf,
    bin_counts,
    enhanced_encoding,
    percentile_encoding,
    support_of,
)
from pipeline.quantize.observers import MinMax
from pipeline.quantize.simulate import Encodings, bias_encodings
from pipeline.runtime import Runner
from pipeline.tensors import read_raw

STATS_VERSION = "2"


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="fieldcal-bin")


HISTOGRAM_MODES = ("enhanced", "percentile")
Progress = Callable[[int], None] | None


@dataclass(frozen=True)
class Statistics:
    """What calibration collected: merged min/max, per-image min/max, and histograms if asked."""

    minmax: MinMax
    per_image: NDArray[np.float64]  # (images, 2, tensors): min and max of each image
    pdfs: dict[str, Pdf] | None
    images_run: int  # model executions (cache misses), over both passes
    images_cached: int


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Cache:
    """``<root>/stats/<version>-<model sha>/<kind>/<tensor sha>.npy``, written atomically."""

    def __init__(self, root: Path | None, model_sha: str) -> None:
        self.dir = root / "stats" / f"{STATS_VERSION}-{model_sha[:16]}" if root else None

    def path(self, kind: str, key: str) -> Path | None:
        return self.dir / kind / f"{key}.npy" if self.dir is not None else None

    def load(self, kind: str, key: str, shape: tuple[int, ...]) -> NDArray[np.generic] | None:
        p = self.path(kind, key)
        if p is None or not p.is_file():
            return None
        try:
            arr = np.load(p)
        except (OSError, ValueError):
            return None  # a damaged entry is recomputed
        return arr if arr.shape == shape else None

    def save(self, kind: str, key: str, arr: NDArray[np.generic]) -> None:
        p = self.path(kind, key)
        if p is not None:
            with atomic_path(p) as tmp, open(tmp, "wb") as fh:
                np.save(fh, arr)


def _run_batches(
    view: ModelView,
    raws: Sequence[Path],
    todo: Sequence[int],
    tp: TensorsParams,
    batch_size: int,
    consume: Callable[[int, dict[str, NDArray[np.float32]]], None],
) -> None:
    """Run the float model on images ``todo`` (indices into ``raws``) in batches; call
    ``consume(image index, {tensor: activation})`` for each image."""
    if not todo:
        return
    names = view.all_tensors
    runner = Runner(with_outputs(view.model, names))
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        x = np.concatenate([read_raw(raws[i], tp, view.input_layout) for i in chunk])
        values = runner.run(x, names)
        for b, i in enumerate(chunk):
            consume(i, {k: v[b] for k, v in values.items()})


def _run_minmax(
    view: ModelView,
    raws: Sequence[Path],
    todo: Sequence[int],
    tp: TensorsParams,
    batch_size: int,
    consume: Callable[[int, NDArray[np.float64]], None],
) -> None:
    """Per-image (2, tensors) min/max with the reductions inside onnxruntime: no activation
    leaves the runtime, so memory stays near plain inference."""
    if not todo:
        return
    names = view.all_tensors
    reduced, outs = with_minmax_outputs(view.model, names)
    runner = Runner(reduced)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        x = np.concatenate([read_raw(raws[i], tp, view.input_layout) for i in chunk])
        values = runner.run(x, outs)
        for b, i in enumerate(chunk):
            mins = np.array([float(values[f"{n}__min"][b]) for n in names])
            maxs = np.array([float(values[f"{n}__max"][b]) for n in names])
            bad = np.isnan(mins) | np.isnan(maxs)
            if bad.any():
                raise DataError(
                    f"tensor {names[int(np.flatnonzero(bad)[0])]!r} contains NaN on "
                    f"{raws[i]}; check the input tensors (mean/std) and the model"
                )
            consume(i, np.stack([mins, maxs]))


def collect(
    view: ModelView,
    raws: Sequence[Path],
    tp: TensorsParams,
    model_sha: str,
    cache_root: Path | None,
    histograms: bool = False,
    batch_size: int = 1,
    progress: Progress = None,
) -> Statistics:
    """Statistics of every tensor of the model over ``raws``, in order.

    The model runs once per image not in the cache. Histograms need each tensor's support,
    which comes from the first image's min/max: when that image is cached (the usual case after
    adding images), min/max and histograms of new images come from the same run; otherwise the
    new images run a second time, once their min/max fixed the supports.
    """
    names = view.all_tensors
    n, m = len(names), len(raws)
    cache = _Cache(cache_root, model_sha)
    keys = [_file_sha(p) for p in raws]
    per_image = np.empty((m, 2, n))
    known = np.zeros(m, dtype=bool)
    for i, key in enumerate(keys):
        hit = cache.load("minmax", key, (2, n))
        if hit is not None:
            per_image[i], known[i] = hit, True
    cached = int(known.sum())
    if progress and cached:
        progress(cached)
    hist = _Histograms(names, per_image, known, keys, cache) if histograms and m else None
    if hist is not None and not hist.ready:
        hist = None  # supports depend on images not seen yet: histograms in a second pass

    def take_minmax(i: int, mm: NDArray[np.float64]) -> None:
        per_image[i] = mm
        cache.save("minmax", keys[i], mm)
        if progress:
            progress(1)

    def take(i: int, acts: dict[str, NDArray[np.float32]]) -> None:
        if not known[i]:
            one = MinMax.of(names, acts)
            take_minmax(i, np.stack([one.mins, one.maxs]))
        if hist is not None and i in hist.todo:
            hist.take(i, acts)

    missing = [i for i in range(m) if not known[i]]
    if hist is None:  # min/max only (now): reduce inside the runtime
        _run_minmax(view, raws, missing, tp, batch_size, take_minmax)
        todo = missing
    else:  # histograms need the activations themselves: one run gives both
        todo = sorted(set(missing) | hist.todo)
        _run_batches(view, raws, todo, tp, batch_size, take)
    ran = len(todo)
    if histograms and m and hist is None:
        hist = _Histograms(names, per_image, np.ones(m, dtype=bool), keys, cache)
        second = sorted(hist.todo)
        _run_batches(view, raws, second, tp, batch_size, hist.take)
        ran += len(second)
    total = MinMax(
        tuple(names),
        per_image[:, 0].min(0) if m else np.full(n, np.inf),
        per_image[:, 1].max(0) if m else np.full(n, -np.inf),
        m,
    )
    pdfs = hist.pdfs(per_image) if hist is not None else None
    return Statistics(total, per_image, pdfs, ran, cached)


class _Histograms:
    """Per-tensor PDFs over a calibration set. Every image of a set has the same tensor sizes,
    so the mean of per-image PDFs is the summed integer counts over (size x images): exact,
    and the same whichever images came from the cache."""

    def __init__(
        self,
        names: Sequence[str],
        per_image: NDArray[np.float64],
        known: NDArray[np.bool_],
        keys: Sequence[str],
        cache: _Cache,
    ) -> None:
        n, m = len(names), len(keys)
        self.names, self.keys, self.cache, self.m = list(names), list(keys), cache, m
        self.supports = np.full((n, 2), np.nan)  # (first left edge, width) per tensor
        self.first = np.full(n, m)  # first image whose tensor is not all zero
        self.ready = True
        for t in range(n):
            for i in range(m):
                if not known[i]:
                    self.ready = False  # this tensor's support may come from image i
                    break
                if per_image[i, 0, t] != 0.0 or per_image[i, 1, t] != 0.0:
                    self.first[t] = i
                    self.supports[t] = support_of(per_image[i, 0, t], per_image[i, 1, t])
                    break
        self.kind = "hist-" + hashlib.sha256(self.supports.tobytes()).hexdigest()[:16]
        self.totals = np.zeros((n, PDF_SIZE), dtype=np.int64)
        self.sizes = np.zeros(n, dtype=np.int64)
        self.todo: set[int] = set()
        if not self.ready:
            return
        for i, key in enumerate(keys):
            hit = cache.load(self.kind, key, (n, PDF_SIZE + 1))
            if hit is None:
                self.todo.add(i)
            else:
                self._add(i, hit.astype(np.int64))

    def _add(self, i: int, entry: NDArray[np.int64]) -> None:
        used = self.first <= i  # libpymo skips a tensor's all-zero batches before its support
        self.totals[used] += entry[used, :PDF_SIZE]
        self.sizes[:] = entry[:, PDF_SIZE]

    def take(self, i: int, acts: dict[str, NDArray[np.float32]]) -> None:
        entry = np.zeros((len(self.names), PDF_SIZE + 1), dtype=np.int64)

        def one(t: int) -> None:
            name = self.names[t]
            if self.first[t] < self.m:
                entry[t, :PDF_SIZE] = bin_counts(acts[name], *self.supports[t])
            entry[t, PDF_SIZE] = acts[name].size

        # numpy releases the GIL on large arrays: bin tensors on every core
        list(_pool().map(one, range(len(self.names))))
        self.cache.save(self.kind, self.keys[i], entry)
        self._add(i, entry)

    def pdfs(self, per_image: NDArray[np.float64]) -> dict[str, Pdf]:
        out = {}
        for t, name in enumerate(self.names):
            pdf = Pdf(
                seen=True, min=float(per_image[:, 0, t].min()), max=float(per_image[:, 1, t].max())
            )
            if self.first[t] < self.m:
                k = self.m - int(self.first[t])
                pdf.set_support(float(self.supports[t, 0]), float(self.supports[t, 1]))
                pdf.pdf = self.totals[t] / (float(self.sizes[t]) * k)
                pdf.iterations = k
            out[name] = pdf
        return out


def _minmax_encoding(
    mode: str, lo: float, hi: float, bitwidth: int, qp: QuantizeParams
) -> Encoding | None:
    """``tf`` or ``symmetric`` from a range, with the §10 knobs in ``qp``; None for the modes
    that need more than a range."""
    if mode == "tf":
        return tf_encoding(lo, hi, bitwidth, qp.min_range_value)
    if mode == "symmetric":
        return symmetric_encoding(
            lo,
            hi,
            bitwidth,
            qp.min_range_value,
            strict=qp.strict_symmetric,
            unsigned=qp.unsigned_symmetric,
            rule=qp.symmetric_scale_rule,
        )
    return None


def activation_encoding(name: str, stats: Statistics, qp: QuantizeParams) -> Encoding:
    a = qp.activations
    lo, hi = stats.minmax.range_of(name)
    enc = _minmax_encoding(a.mode, lo, hi, a.bitwidth, qp)
    if enc is not None:
        return enc
    assert stats.pdfs is not None, "histogram modes need histograms collected"
    pdf = stats.pdfs[name]
    if a.mode == "enhanced":
        return enhanced_encoding(pdf, a.bitwidth, False, min_range=qp.min_range_value)
    return percentile_encoding(pdf, a.percentile, a.bitwidth, qp.min_range_value)


def _one_weight_encoding(
    lo: float, hi: float, data: NDArray[np.float32], qp: QuantizeParams
) -> Encoding:
    wp = qp.weights
    enc = _minmax_encoding(wp.mode, lo, hi, wp.bitwidth, qp)
    if enc is not None:
        return enc
    if wp.mode == "adjusted":
        return adjusted_encoding(lo, hi, wp.bitwidth, qp.min_range_value)
    pdf = Pdf()
    pdf.update(data)  # weights are one "batch"
    if wp.mode == "enhanced":
        return enhanced_encoding(pdf, wp.bitwidth, False, min_range=qp.min_range_value)
    return percentile_encoding(pdf, wp.percentile, wp.bitwidth, qp.min_range_value)


def weight_encodings(w: NDArray[np.float32], axis: int, qp: QuantizeParams) -> list[Encoding]:
    """One encoding per output channel (per-channel, always symmetric) or one for the tensor."""
    wp = qp.weights
    if wp.per_channel:
        moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)  # (C_out, rest)
        return [
            symmetric_encoding(
                float(c.min()),
                float(c.max()),
                wp.bitwidth,
                qp.min_range_value,
                strict=qp.strict_symmetric,
                rule=qp.symmetric_scale_rule,
            )
            for c in moved
        ]
    return [_one_weight_encoding(float(w.min()), float(w.max()), w, qp)]


def compute_encodings(view: ModelView, stats: Statistics, qp: QuantizeParams) -> Encodings:
    """Encodings for every activation tensor of the model and every weight and bias."""
    if stats.minmax.count == 0:
        raise NoStatisticsError(
            "the calibration set is empty: curate picked no calibration images. "
            "Check curate.calibration quotas and that ingest found images."
        )
    acts: dict[str, Encoding] = {}
    for name in view.all_tensors:
        try:
            acts[name] = activation_encoding(name, stats, qp)
        except ValueError as err:
            raise NoStatisticsError(f"tensor {name!r}: {err}") from None
    weights = {op.weight_name: weight_encodings(op.weight, op.axis, qp) for op in view.weighted}
    axes = {op.weight_name: op.axis for op in view.weighted}
    partial = Encodings(acts, weights, {}, axes)
    biases = {
        op.bias_name: bias_encodings(op, partial, qp.bias_bitwidth, qp.min_range_value)
        for op in view.weighted
        if op.bias_name
    }
    return Encodings(acts, weights, biases, axes)


def quantizer_args(qp: QuantizeParams, model_sha: str, images: int) -> dict[str, object]:
    """The ``quantizer_args`` block of the encodings file (0.6.1 names, plus fieldcal's own)."""
    a, w = qp.activations, qp.weights
    return {
        "activation_bitwidth": a.bitwidth,
        "param_bitwidth": w.bitwidth,
        "dtype": "int",
        "is_symmetric": str(w.mode == "symmetric" or w.per_channel),
        "per_channel_quantization": str(w.per_channel),
        "quant_scheme": f"act:{a.mode} param:{w.mode}",
        "fieldcal": {
            "backend": qp.backend,
            "bias_bitwidth": qp.bias_bitwidth,
            "calibration_images": images,
            "min_range": qp.min_range,
            "model_sha256": model_sha,
            "round_mode": qp.round_mode,
            "symmetric_scale_rule": qp.symmetric_scale_rule,
            "fused_tensors_note": (
                "activation_encodings cover every tensor of the model; tensors QNN fuses away "
                "(Conv output before BatchNorm/ReLU) carry their own range for reference and "
                "are not quantized in fieldcal's simulation"
            ),
        },
    }


def calibration_record(view: ModelView, stats: MinMax, model_sha: str) -> dict[str, object]:
    kept = set(view.kept_tensors)
    return {
        "model_sha256": model_sha,
        "images": stats.count,
        "tensors": [
            {
                "name": t,
                "op_type": view.producers.get(t, "Input"),
                "kept": t in kept,
                "quantized_at": view.fused_into.get(t, t),
                "min": stats.range_of(t)[0],
                "max": stats.range_of(t)[1],
            }
            for t in view.all_tensors
        ],
    }
