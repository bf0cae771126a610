"""Calibration: run the float model over calibration tensors, collect statistics, compute encodings.

Statistics cover the tensors QNN keeps (``ModelView.kept_tensors``: after BatchNorm folding and
Conv(+BN)+ReLU fusion), the only ones that get activation encodings. Two kinds per image, both
cached by the content of the ``.raw`` tensor (which already encodes image content and
preprocessing) and the model's hash, under ``<cache>/stats``:

* ranges for ``tf`` and ``symmetric``: each tensor's max and, unless it is nonnegative by
  construction (ReLU, Clip from 0: its min is recorded as that bound, 0), its min, reduced
  inside onnxruntime so no activation leaves the runtime
  (:func:`pipeline.graph.rewrite.with_range_outputs`).
  Ranges merge exactly and in any order, so a run over cached + new images equals a fresh run.
  Recording 0 for a ReLU output changes no encoding: both modes widen the range to contain 0;
* exact min/max plus 3 x 512-bin histograms for ``enhanced`` and ``percentile``
  (:mod:`pipeline.quantization.histogram`), from one pass over each activation
  (:func:`pipeline.native.kernels.histogram`). A tensor's histogram support is fixed, as in
  libpymo, by the first calibration image (in input-list order) on which it is not all zero,
  and comes from that image's cached min/max, so histograms of unchanged images stay valid
  while that image is unchanged. The PDF is the mean of the per-image PDFs in input-list order,
  so cached and fresh runs give the same bytes.

Memory is bounded by one batch of activations, never by the number of images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pipeline.atomic import atomic_path
from pipeline.data.tensors import read_raw
from pipeline.errors import DataError, NoStatisticsError
from pipeline.graph.rewrite import with_outputs, with_range_outputs
from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView
from pipeline.native import kernels
from pipeline.params import QuantizeParams, TensorsParams
from pipeline.quantization.encoding import (
    Encoding,
    adjusted_encoding,
    symmetric_encoding,
    tf_encoding,
)
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.histogram import (
    PDF_SIZE,
    Pdf,
    enhanced_encoding,
    percentile_encoding,
    support_of,
)
from pipeline.quantization.observers import MinMax
from pipeline.quantization.simulate import bias_encodings

STATS_VERSION = "4"  # 4: in-graph ranges check for NaN (3 missed one not first)


HISTOGRAM_MODES = ("enhanced", "percentile")
Progress = Callable[[int], None] | None


@dataclass(frozen=True)
class Statistics:
    """What calibration collected: merged ranges, per-image ranges, and histograms if asked."""

    minmax: MinMax
    per_image: NDArray[np.float64]  # (images, 2, tensors): min and max of each image
    pdfs: dict[str, Pdf] | None
    images_run: int  # model executions (cache misses)
    images_cached: int


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Cache:
    """``<root>/stats/<version>-<model sha>/<kind>/<tensor sha>.npy``, written atomically.

    Kinds: ``range`` (ReLU outputs' min recorded as 0), ``minmax`` (exact; also a valid range),
    ``hist-<supports hash>`` (counts per tensor, plus the tensor's element count)."""

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

    def load_ranges(
        self, kinds: Sequence[str], keys: Sequence[str], n: int
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """(images, 2, n) per-image ranges from the first kind that has each image."""
        per_image = np.zeros((len(keys), 2, n))  # unknown rows are filled by the caller
        known = np.zeros(len(keys), dtype=bool)
        for i, key in enumerate(keys):
            for kind in kinds:
                hit = self.load(kind, key, (2, n))
                if hit is not None:
                    per_image[i], known[i] = hit, True
                    break
        return per_image, known


def _nan_error(name: str, raw: Path) -> DataError:
    return DataError(
        f"tensor {name!r} contains NaN on {raw}; check the input tensors (mean/std) and the model"
    )


def _batches(
    view: ModelView, raws: Sequence[Path], todo: Sequence[int], tp: TensorsParams, size: int
) -> Iterator[tuple[Sequence[int], NDArray[np.float32]]]:
    """(image indices, their stacked input tensor) for ``todo`` in batches of ``size``."""
    for start in range(0, len(todo), size):
        chunk = todo[start : start + size]
        yield chunk, np.concatenate([read_raw(raws[i], tp, view.input_layout) for i in chunk])


def _run_ranges(
    view: ModelView,
    raws: Sequence[Path],
    todo: Sequence[int],
    tp: TensorsParams,
    batch_size: int,
    consume: Callable[[int, NDArray[np.float64]], None],
) -> None:
    """Per-image (2, tensors) ranges, reduced inside onnxruntime."""
    if not todo:
        return
    names = view.kept_tensors
    reduced, outs = with_range_outputs(view.model, names, view.nonnegative, view.shapes)
    runner = Runner(reduced)
    for chunk, x in _batches(view, raws, todo, tp, batch_size):
        values = runner.run(x, outs)
        for b, i in enumerate(chunk):
            mins = np.array(
                [0.0 if n in view.nonnegative else float(values[f"{n}__min"][b]) for n in names]
            )
            maxs = np.array([float(values[f"{n}__max"][b]) for n in names])
            for n in names:
                if n not in view.nonnegative and np.isnan(values[f"{n}__nan"][b]):
                    _check_nan(view, n, x[b : b + 1], raws[i])
            consume(i, np.stack([mins, maxs]))


def _check_nan(view: ModelView, name: str, x: NDArray[np.float32], raw: Path) -> None:
    """The in-graph sum of ``name`` is NaN: a NaN in the tensor, or +inf beside -inf (whose
    range is valid). Run it again exposed and look."""
    values = Runner(with_outputs(view.model, [name])).run(x, [name])
    if kernels.minmax(np.ascontiguousarray(values[name]).ravel())[2]:
        raise _nan_error(name, raw)


def _run_activations(
    view: ModelView,
    raws: Sequence[Path],
    todo: Sequence[int],
    tp: TensorsParams,
    batch_size: int,
    consume: Callable[[int, list[NDArray[np.float32]]], None],
) -> None:
    """Run the float model on images ``todo`` (indices into ``raws``) in batches; call
    ``consume(image index, [flat activation of each kept tensor])`` for each image."""
    if not todo:
        return
    names = view.kept_tensors
    runner = Runner(with_outputs(view.model, names))
    for chunk, x in _batches(view, raws, todo, tp, batch_size):
        values = runner.run(x, names)
        for b, i in enumerate(chunk):
            consume(i, [np.ascontiguousarray(values[t][b]).ravel() for t in names])
        del values


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
    """Statistics of every kept tensor of the model over ``raws``, in order; the model runs
    once per image not in the cache (with histograms: not binned with this set's supports)."""
    names = view.kept_tensors
    n, m = len(names), len(raws)
    cache = _Cache(cache_root, model_sha)
    keys = [_file_sha(p) if cache.dir else str(i) for i, p in enumerate(raws)]
    if not histograms:
        per_image, known = cache.load_ranges(("minmax", "range"), keys, n)
        missing = [i for i in range(m) if not known[i]]
        if progress and m - len(missing):
            progress(m - len(missing))

        def take_range(i: int, mm: NDArray[np.float64]) -> None:
            per_image[i] = mm
            cache.save("range", keys[i], mm)
            if progress:
                progress(1)

        _run_ranges(view, raws, missing, tp, batch_size, take_range)
        # The result must not depend on which entries the cache happens to hold: a ReLU
        # output's min is its bound, 0, also where an exact ("minmax") entry served the image,
        # and zeros carry no sign (the in-graph min, minus a max, can be -0.0 where the exact
        # one is 0.0).
        per_image[:, 0, [j for j, t in enumerate(names) if t in view.nonnegative]] = 0.0
        per_image += 0.0
        return Statistics(
            MinMax.of_images(names, per_image), per_image, None, len(missing), m - len(missing)
        )

    return _collect_histograms(view, raws, keys, tp, cache, batch_size, progress)


def _collect_histograms(
    view: ModelView,
    raws: Sequence[Path],
    keys: Sequence[str],
    tp: TensorsParams,
    cache: _Cache,
    batch_size: int,
    progress: Progress,
) -> Statistics:
    """One ordered pass: each image is served from the cache when its histograms were binned
    with the supports this set gives, else it runs. Supports are decided in input-list order,
    so an image can only be judged once every earlier image that could decide one has run."""
    names = view.kept_tensors
    n, m = len(names), len(keys)
    per_image, known = cache.load_ranges(("minmax",), keys, n)
    hist = _Histograms(n, m)
    pending: list[int] = []
    runs = 0

    def take(i: int, acts: list[NDArray[np.float32]]) -> None:
        per_image[i], entry = hist.bin(i, acts, names, raws[i])
        cache.save("minmax", keys[i], per_image[i])
        cache.save(_HIST, keys[i], entry)
        hist.add(i, entry)
        if progress:
            progress(1)

    def flush() -> None:
        nonlocal runs
        _run_activations(view, raws, pending, tp, batch_size, take)
        runs += len(pending)
        pending.clear()

    for i, key in enumerate(keys):
        hit = cache.load(_HIST, key, (n, _ENTRY)) if known[i] else None
        entry = hit.astype(np.int64, copy=False) if hit is not None else None
        if entry is not None and pending and hist.undecided():
            flush()  # a pending image may decide a support this entry depends on
        if entry is not None and hist.valid(i, per_image[i], entry):
            hist.add(i, entry)
            if progress:
                progress(1)
        else:
            pending.append(i)
    flush()
    pdfs = hist.pdfs(names, per_image) if m else {}
    return Statistics(MinMax.of_images(names, per_image), per_image, pdfs, runs, m - runs)


_HIST = "hist"
_ENTRY = PDF_SIZE + 3  # counts, element count, support (start, width) as float64 bits


class _Histograms:
    """Per-tensor PDFs over a calibration set, built in input-list order.

    libpymo fixes a tensor's support on the first batch where it is not all zero and ignores
    the all-zero batches before it; after it, the PDF is the mean of the per-batch PDFs. Every
    image of a set has the same tensor sizes, so that mean is the summed integer counts over
    (size x images): exact, and the same whichever images came from the cache. A cached entry
    records the support each tensor was binned with, so it is reused only where it matches."""

    def __init__(self, n: int, m: int) -> None:
        self.m = m
        self.supports = np.full((n, 2), np.nan)  # (first left edge, width) per tensor
        self.first = np.full(n, m)  # first image whose tensor is not all zero
        self.totals = np.zeros((n, PDF_SIZE), dtype=np.int64)
        self.sizes = np.zeros(n, dtype=np.int64)

    def undecided(self) -> bool:
        return bool((self.first == self.m).any())

    def _decide(self, i: int, t: int, lo: float, hi: float) -> None:
        if self.first[t] == self.m and (lo != 0.0 or hi != 0.0):
            self.first[t] = i
            self.supports[t] = support_of(lo, hi)

    def valid(self, i: int, mm: NDArray[np.float64], entry: NDArray[np.int64]) -> bool:
        """Decide supports from image ``i``'s known min/max; is its cached entry binned with
        the supports of every tensor that image ``i`` contributes to?"""
        for t in np.flatnonzero(self.first == self.m):
            self._decide(i, int(t), float(mm[0, t]), float(mm[1, t]))
        used = self.first <= i
        stored = entry[:, PDF_SIZE + 1 :].view(np.float64)
        return bool((stored[used] == self.supports[used]).all())

    def bin(
        self, i: int, acts: Sequence[NDArray[np.float32]], names: Sequence[str], raw: Path
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Image ``i``'s exact (2, tensors) min/max and its cache entry, deciding the supports
        of tensors first non-zero here. One pass per tensor, tensors on every core."""
        entry = np.zeros((len(names), _ENTRY), dtype=np.int64)
        mm = np.empty((2, len(names)))

        def one(t: int) -> None:
            x = acts[t]
            entry[t, PDF_SIZE] = x.size
            if not x.size:
                mm[:, t] = np.inf, -np.inf
                return
            if self.first[t] < i:  # support known: one read gives both
                start, width = self.supports[t]
                (lo, hi, nan), entry[t, :PDF_SIZE] = kernels.minmax_histogram(
                    x, start, width, PDF_SIZE
                )
            else:
                lo, hi, nan = kernels.minmax(x)
            if nan:
                raise _nan_error(names[t], raw)
            mm[:, t] = lo, hi
            if self.first[t] >= i:
                self._decide(i, t, lo, hi)  # only where this image is the first non-zero one
                if self.first[t] == i:
                    start, width = self.supports[t]
                    entry[t, :PDF_SIZE] = kernels.histogram(x, start, width, PDF_SIZE)
            entry[t, PDF_SIZE + 1 :] = self.supports[t].view(np.int64)

        kernels.each(one, range(len(names)))
        return mm, entry

    def add(self, i: int, entry: NDArray[np.int64]) -> None:
        used = self.first <= i
        self.totals[used] += entry[used, :PDF_SIZE]
        self.sizes[:] = entry[:, PDF_SIZE]

    def pdfs(self, names: Sequence[str], per_image: NDArray[np.float64]) -> dict[str, Pdf]:
        out = {}
        for t, name in enumerate(names):
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
    for name in view.kept_tensors:
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
                "activation_encodings cover the tensors QNN keeps after BatchNorm folding and "
                "Conv(+BN)+ReLU/ReLU6 fusion; a fused-away tensor (Conv output before "
                "BatchNorm/ReLU) has no encoding of its own, as in QNN"
            ),
        },
    }


def calibration_record(view: ModelView, stats: Statistics, model_sha: str) -> dict[str, object]:
    """Every activation tensor of the model: the kept ones with their calibrated range, the
    fused-away ones (Conv output before BN/ReLU) with the kept tensor QNN quantizes instead.
    ``min_measured`` is false where the min is a ReLU's bound, 0 (``tf``/``symmetric``)."""
    kept = set(view.kept_tensors)
    exact = stats.pdfs is not None
    rows: list[dict[str, object]] = []
    for t in view.all_tensors:
        row: dict[str, object] = {
            "name": t,
            "op_type": view.producers.get(t, "Input"),
            "kept": t in kept,
            "quantized_at": view.fused_into.get(t, t),
        }
        if t in kept:
            lo, hi = stats.minmax.range_of(t)
            row |= {"min": lo, "max": hi, "min_measured": exact or t not in view.nonnegative}
        rows.append(row)
    return {"model_sha256": model_sha, "images": stats.minmax.count, "tensors": rows}
