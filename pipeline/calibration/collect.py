"""Calibration runs: the float model over calibration tensors, statistics cached per image.

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
  (:mod:`pipeline.calibration.histograms`), from one pass over each activation
  (:func:`pipeline.native.kernels.histogram`). The PDF is the mean of the per-image PDFs in
  input-list order, so cached and fresh runs give the same bytes.

The phases are named as in onnxruntime's ``CalibraterBase``: :meth:`Calibrator.augment_graph`
(the model with the outputs statistics need), :meth:`Calibrator.collect_data` (run it over the
images, cached) and :meth:`Calibrator.compute_data` (encodings from the statistics).
Memory is bounded by one batch of activations, never by the number of images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray

from pipeline.atomic import atomic_path
from pipeline.calibration.encodings import compute_encodings
from pipeline.calibration.histograms import ENTRY_SIZE, HIST_KIND, Histograms
from pipeline.calibration.statistics import HISTOGRAM_MODES, Statistics, nan_error
from pipeline.data.tensors import read_raw
from pipeline.graph.rewrite import with_outputs, with_range_outputs
from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView
from pipeline.native import kernels
from pipeline.params import QuantizeParams, TensorsParams
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.observers import MinMax

STATS_VERSION = "4"  # 4: in-graph ranges check for NaN (3 missed one not first)

Progress = Callable[[int], None] | None


@dataclass(frozen=True)
class Calibrator:
    """What one calibration needs, travelling together: the model as QNN sees it (its
    ``sha256`` keys the statistics cache), the preprocessing of its tensors, the quantization
    settings (modes, batch size) and the cache root (None: no cache)."""

    view: ModelView
    tp: TensorsParams
    qp: QuantizeParams
    cache_root: Path | None = None

    def __post_init__(self) -> None:
        if self.cache_root is not None and not self.view.sha256:
            raise ValueError(
                "a statistics cache is keyed by the model's sha256; load the view with "
                "pipeline.graph.load.load_view or set ModelView.sha256"
            )

    @property
    def histograms(self) -> bool:
        """Whether the activation mode needs histograms rather than ranges."""
        return self.qp.activations.mode in HISTOGRAM_MODES

    def augment_graph(self, histograms: bool) -> tuple[onnx.ModelProto, list[str]]:
        """The model with the outputs statistics need, and their names: each kept tensor's
        in-graph range reductions, or (for histograms) the kept tensors themselves."""
        view = self.view
        if histograms:
            return with_outputs(view.model, view.kept_tensors), list(view.kept_tensors)
        return with_range_outputs(view.model, view.kept_tensors, view.nonnegative, view.shapes)

    def collect_data(
        self, raws: Sequence[Path], histograms: bool | None = None, progress: Progress = None
    ) -> Statistics:
        """Statistics of every kept tensor of the model over ``raws``, in order; the model runs
        once per image not in the cache (with histograms: not binned with this set's supports).
        ``histograms``: None for what the activation mode needs."""
        cache = _StatsCache(self.cache_root, self.view.sha256)
        keys = [_file_sha(p) if cache.dir else str(i) for i, p in enumerate(raws)]
        if self.histograms if histograms is None else histograms:
            return _collect_histograms(self, raws, keys, cache, progress)
        return _collect_ranges(self, raws, keys, cache, progress)

    def compute_data(self, stats: Statistics) -> Encodings:
        """Encodings of every activation, weight and bias from ``stats`` and the settings."""
        return compute_encodings(self.view, stats, self.qp)


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _StatsCache:
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


def _collect_ranges(
    cal: Calibrator,
    raws: Sequence[Path],
    keys: Sequence[str],
    cache: _StatsCache,
    progress: Progress,
) -> Statistics:
    """Per-image ranges from the cache (exact or range entries), the model run on the rest."""
    view = cal.view
    names = view.kept_tensors
    n, m = len(names), len(raws)
    per_image, known = cache.load_ranges(("minmax", "range"), keys, n)
    missing = [i for i in range(m) if not known[i]]
    if progress and m - len(missing):
        progress(m - len(missing))

    def take_range(i: int, mm: NDArray[np.float64]) -> None:
        per_image[i] = mm
        cache.save("range", keys[i], mm)
        if progress:
            progress(1)

    _run_ranges(cal, raws, missing, take_range)
    # The result must not depend on which entries the cache happens to hold: a ReLU
    # output's min is its bound, 0, also where an exact ("minmax") entry served the image,
    # and zeros carry no sign (the in-graph min, minus a max, can be -0.0 where the exact
    # one is 0.0).
    per_image[:, 0, [j for j, t in enumerate(names) if t in view.nonnegative]] = 0.0
    per_image += 0.0
    return Statistics(
        MinMax.of_images(names, per_image), per_image, None, len(missing), m - len(missing)
    )


def _collect_histograms(
    cal: Calibrator,
    raws: Sequence[Path],
    keys: Sequence[str],
    cache: _StatsCache,
    progress: Progress,
) -> Statistics:
    """One ordered pass: each image is served from the cache when its histograms were binned
    with the supports this set gives, else it runs. Supports are decided in input-list order,
    so an image can only be judged once every earlier image that could decide one has run."""
    names = cal.view.kept_tensors
    n, m = len(names), len(keys)
    per_image, known = cache.load_ranges(("minmax",), keys, n)
    hist = Histograms(n, m)
    pending: list[int] = []
    runs = 0

    def take(i: int, acts: list[NDArray[np.float32]]) -> None:
        per_image[i], entry = hist.bin(i, acts, names, raws[i])
        cache.save("minmax", keys[i], per_image[i])
        cache.save(HIST_KIND, keys[i], entry)
        hist.add(i, entry)
        if progress:
            progress(1)

    def flush() -> None:
        nonlocal runs
        _run_activations(cal, raws, pending, take)
        runs += len(pending)
        pending.clear()

    for i, key in enumerate(keys):
        hit = cache.load(HIST_KIND, key, (n, ENTRY_SIZE)) if known[i] else None
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


def _batches(
    cal: Calibrator, raws: Sequence[Path], todo: Sequence[int]
) -> Iterator[tuple[Sequence[int], NDArray[np.float32]]]:
    """(image indices, their stacked input tensor) for ``todo`` in batches of the batch size."""
    size = cal.qp.batch_size
    for start in range(0, len(todo), size):
        chunk = todo[start : start + size]
        yield (
            chunk,
            np.concatenate([read_raw(raws[i], cal.tp, cal.view.input_layout) for i in chunk]),
        )


def _run_ranges(
    cal: Calibrator,
    raws: Sequence[Path],
    todo: Sequence[int],
    consume: Callable[[int, NDArray[np.float64]], None],
) -> None:
    """Call ``consume(image index, its (2, tensors) range)`` for images ``todo`` (indices into
    ``raws``), reduced inside onnxruntime."""
    if not todo:
        return
    view = cal.view
    names = view.kept_tensors
    reduced, outs = cal.augment_graph(histograms=False)
    runner = Runner(reduced)
    for chunk, x in _batches(cal, raws, todo):
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
        raise nan_error(name, raw)


def _run_activations(
    cal: Calibrator,
    raws: Sequence[Path],
    todo: Sequence[int],
    consume: Callable[[int, list[NDArray[np.float32]]], None],
) -> None:
    """Run the float model on images ``todo`` (indices into ``raws``) in batches; call
    ``consume(image index, [flat activation of each kept tensor])`` for each image."""
    if not todo:
        return
    model, names = cal.augment_graph(histograms=True)
    runner = Runner(model)
    for chunk, x in _batches(cal, raws, todo):
        values = runner.run(x, names)
        for b, i in enumerate(chunk):
            consume(i, [np.ascontiguousarray(values[t][b]).ravel() for t in names])
        del values
