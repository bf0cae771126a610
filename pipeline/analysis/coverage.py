"""Coverage: does new field data fit the current encodings, or does it need re-quantization?

The float model runs on a session's images; each kept tensor's activations are compared with
its current encoding, tensor by tensor (no propagation, so it is cheap and says which tensor):

* clip rate: share of values more than half a step outside [min, max] of the encoding
  (clipping, e.g. glare; nearer values only round to the range's end, as inside it);
* local SQNR: quantize-dequantize the activations with the encoding and measure
  ``10 log10(sum x^2 / sum (x - q(x))^2)``; its drop against the same measure on the
  evaluation set the encodings were checked on predicts the SQNR loss (a low-light scene whose
  activations use a sliver of the range loses SQNR without clipping anything). It rounds
  half away from zero whatever ``quantize.round_mode`` says, and the result is the same: the
  modes differ only on ties, which sit half a step from both neighbours, so the error's size
  (all this measure sums) does not depend on the mode;
* range use: max |x| on the new data over the encoding's max |range|.

Verdict per session and scene: ``requantize: yes`` when any tensor clips more than
``clip_rate_max`` or loses more than ``sqnr_drop_db``; the reason names the tensor and figure.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from pipeline import engine
from pipeline.analysis.artifacts import CoverageTensor, CoverageVerdict
from pipeline.atomic import write_json
from pipeline.data.tensors import preprocess, to_layout
from pipeline.graph.load import load_view, sha256_file
from pipeline.graph.rewrite import with_outputs
from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView
from pipeline.layout import Layout
from pipeline.params import ComputeParams, CoverageParams, PathsParams, TensorsParams
from pipeline.progress import track
from pipeline.quantization.encoding import Encoding, dequantize, quantize
from pipeline.quantization.encodings import Encodings
from pipeline.report.numbers import percent_beside


def dot64(a: NDArray[np.floating], b: NDArray[np.floating]) -> float:
    """sum(a * b) accumulated in float64 (einsum casts in its buffers: no float64 copies).

    Not BLAS: BLAS splits sums by its thread count, so results would depend on the machine
    and on the engine (Dask workers run BLAS single-threaded).
    """
    return float(np.einsum("i,i->", a, b, dtype=np.float64))


@dataclass
class TensorAcc:
    """One tensor's sums over images: values, clipped values, signal and noise, peak |x|."""

    n: int = 0
    clipped: int = 0
    signal: float = 0.0
    noise: float = 0.0
    peak: float = 0.0

    def add(self, x: NDArray[np.float32], e: Encoding) -> None:
        xd = x.astype(np.float64).ravel()
        self.n += xd.size
        half = e.scale / 2  # within half a step of the range: an ordinary rounding error
        self.clipped += int(np.count_nonzero((xd < e.min - half) | (xd > e.max + half)))
        err = xd - dequantize(quantize(xd, e), e)
        self.signal += dot64(xd, xd)
        self.noise += dot64(err, err)
        self.peak = max(self.peak, float(np.abs(xd).max()) if xd.size else 0.0)

    def merge(self, other: TensorAcc) -> None:
        self.n += other.n
        self.clipped += other.clipped
        self.signal += other.signal
        self.noise += other.noise
        self.peak = max(self.peak, other.peak)

    def sqnr(self) -> float:
        eps = np.finfo(np.float64).eps ** 2
        return 10 * math.log10(max(self.signal, eps) / max(self.noise, eps))


@dataclass
class Coverage:
    images: int = 0
    tensors: dict[str, TensorAcc] = field(default_factory=dict)

    def merge(self, image: dict[str, TensorAcc]) -> None:
        """Fold in one image's accumulators (images in input order: the sums are then the
        same whichever engine produced them)."""
        self.images += 1
        for t, acc in image.items():
            self.tensors.setdefault(t, TensorAcc()).merge(acc)


def _checked_names(view: ModelView, enc: Encodings) -> list[str]:
    return [t for t in view.kept_tensors if t != view.input_name and t in enc.activations]


def _image_accs(
    runner: Runner, names: Sequence[str], enc: Encodings, x: NDArray[np.float32]
) -> dict[str, TensorAcc]:
    out = runner.run(x, names)
    accs = {t: TensorAcc() for t in names}
    for t in names:
        accs[t].add(out[t], enc.activations[t])
    return accs


def measure(
    view: ModelView,
    enc: Encodings,
    inputs: Sequence[NDArray[np.float32]],
    progress: Callable[[int], None] | None = None,
) -> Coverage:
    """Coverage of ``inputs`` (model-layout tensors) in this process."""
    names = _checked_names(view, enc)
    runner = Runner(with_outputs(view.model, names))
    cov = Coverage()
    for x in inputs:
        cov.merge(_image_accs(runner, names, enc, x))
        if progress:
            progress(1)
    return cov


@dataclass(frozen=True)
class ImageJob:
    """One image's coverage work, self-contained so a cluster worker can run it (absolute
    paths; the worker loads the model and encodings once and keeps them)."""

    model_path: Path
    fold_batchnorm: bool
    encodings_path: Path
    tp: TensorsParams
    image: Path


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=2)
def _loaded(
    model_key: tuple[str, int, int], fold_batchnorm: bool, enc_key: tuple[str, int, int]
) -> tuple[ModelView, Encodings, list[str], Runner]:
    from pipeline.graph.load import load_view
    from pipeline.quantization import encodings_json

    view = load_view(Path(model_key[0]), fold_batchnorm)
    enc_path = Path(enc_key[0])
    enc = encodings_json.for_model(encodings_json.read(enc_path), view, enc_path)
    names = _checked_names(view, enc)
    return view, enc, names, Runner(with_outputs(view.model, names))


def image_coverage(job: ImageJob) -> dict[str, TensorAcc]:
    """Per-tensor accumulators of one image (runs wherever the engine puts it)."""
    view, enc, names, runner = _loaded(
        _stamp(job.model_path), job.fold_batchnorm, _stamp(job.encodings_path)
    )
    with Image.open(job.image) as im:
        im.load()
        x = to_layout(preprocess(im, job.tp), job.tp.layout, view.input_layout)
    return _image_accs(runner, names, enc, x)


def verdict(
    new: Coverage, baseline: Coverage, enc: Encodings, p: CoverageParams
) -> CoverageVerdict:
    """Requantize yes/no for one session and scene, with the reason and the tensors behind it."""
    rows: list[CoverageTensor] = []
    for t, acc in new.tensors.items():
        base = baseline.tensors.get(t)
        e = enc.activations[t]
        rows.append(
            CoverageTensor(
                tensor=t,
                clip_rate=acc.clipped / max(acc.n, 1),
                sqnr_db=acc.sqnr(),
                baseline_sqnr_db=base.sqnr() if base is not None else None,
                sqnr_drop_db=base.sqnr() - acc.sqnr() if base is not None else 0.0,
                range_use=acc.peak / max(abs(e.min), abs(e.max), 1e-30),
            )
        )
    reasons = _reasons(rows, p)
    rows.sort(key=lambda r: (-r.clip_rate, -r.sqnr_drop_db, r.tensor))
    return CoverageVerdict(
        images=new.images,
        requantize="yes" if reasons else "no",
        reason="; ".join(reasons)
        or (
            f"no tensor clips more than {_clip_beside(rows, p)} or loses more than "
            f"{p.sqnr_drop_db} dB"
        ),
        tensors=rows[: p.report_tensors],
    )


def _clip_beside(rows: Sequence[CoverageTensor], p: CoverageParams) -> str:
    """The clip limit beside the worst tensor's rate, with the digits that tell them apart."""
    worst = max((r.clip_rate for r in rows), default=0.0)
    value, limit = percent_beside(worst, p.clip_rate_max)
    return f"{limit} (worst {value})"


def _reasons(rows: Sequence[CoverageTensor], p: CoverageParams) -> list[str]:
    """Why the session needs re-quantization (empty: it does not)."""
    reasons = []
    worst_clip = max(rows, key=lambda r: (r.clip_rate, r.tensor), default=None)
    if worst_clip and worst_clip.clip_rate > p.clip_rate_max:
        rate, limit = percent_beside(worst_clip.clip_rate, p.clip_rate_max)
        reasons.append(f"tensor {worst_clip.tensor} clips {rate} of its values (limit {limit})")
    worst_drop = max(rows, key=lambda r: (r.sqnr_drop_db, r.tensor), default=None)
    if worst_drop and worst_drop.sqnr_drop_db > p.sqnr_drop_db:
        reasons.append(
            f"tensor {worst_drop.tensor} loses {worst_drop.sqnr_drop_db:.1f} dB of "
            f"quantization SQNR against the evaluation set (limit {p.sqnr_drop_db} dB; range use "
            f"{worst_drop.range_use:.0%})"
        )
    return reasons


COVERAGE_VERSION = "1"  # bump when what an image's accumulators hold changes


class TensorAccCache:
    """Per-image accumulators on disk, keyed by (image content, encodings, model, tensor spec):
    a re-run after new captures arrive measures only the new images."""

    def __init__(self, root: Path | None, context: Sequence[str]) -> None:
        self.root = root / "coverage" if root is not None else None
        self.context = json.dumps([COVERAGE_VERSION, *context])

    def _path(self, content_sha: str) -> Path | None:
        if self.root is None:
            return None
        key = hashlib.sha256(f"{self.context}|{content_sha}".encode()).hexdigest()
        return self.root / key[:2] / f"{key}.json"

    def load(self, content_sha: str) -> dict[str, TensorAcc] | None:
        path = self._path(content_sha)
        if path is None or not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return {t: TensorAcc(int(v[0]), int(v[1]), v[2], v[3], v[4]) for t, v in raw.items()}
        except (ValueError, TypeError, IndexError, KeyError):
            return None  # a damaged entry is measured again

    def save(self, content_sha: str, accs: dict[str, TensorAcc]) -> None:
        path = self._path(content_sha)
        if path is not None:  # floats as repr: they read back bit for bit
            write_json(
                path, {t: [a.n, a.clipped, a.signal, a.noise, a.peak] for t, a in accs.items()}
            )


def _cached_map(
    jobs: Sequence[ImageJob],
    shas: Sequence[str],
    cache: TensorAccCache,
    compute: ComputeParams,
) -> tuple[Coverage, int]:
    """Coverage of ``jobs`` in order, measuring only cache misses (on the engine)."""
    found = [cache.load(s) for s in shas]
    todo = [i for i, hit in enumerate(found) if hit is None]
    measured = engine.map_ordered(image_coverage, [jobs[i] for i in todo], compute, 1)
    for i, accs in zip(todo, measured, strict=True):
        cache.save(shas[i], accs)
    fresh = iter(measured)
    cov = Coverage()
    for hit in found:
        cov.merge(hit if hit is not None else next(fresh))
    return cov, len(todo)


@dataclass(frozen=True)
class CoverageInputs:
    """Where a project's coverage check reads from: the project root, its paths, the model
    and how it is prepared, and the tensor spec of its inputs."""

    root: Path
    paths: PathsParams
    model_path: Path
    fold_batchnorm: bool
    tp: TensorsParams

    @property
    def layout(self) -> Layout:
        return Layout(self.root / self.paths.out)


@dataclass
class SessionReport:
    verdicts: dict[str, dict[str, CoverageVerdict]]  # {session: {scene: verdict}}
    measured: int  # images run through the model (cache misses)
    cached: int


def _baseline(
    inputs: CoverageInputs, view: ModelView, enc: Encodings, cache: TensorAccCache
) -> Coverage:
    """The evaluation set's coverage (cached by the evaluation images' content)."""
    import pyarrow.parquet as pq

    from pipeline.data.tensors import read_raw

    index = pq.read_table(inputs.layout.tensors.evaluation.index).to_pylist()
    raws = [inputs.root / r["raw"] for r in index]
    base_key = hashlib.sha256("|".join(sha256_file(r) for r in raws).encode()).hexdigest()
    baseline_accs = cache.load(f"baseline:{base_key}")
    if baseline_accs is not None:
        return Coverage(len(raws), baseline_accs)
    baseline = measure(view, enc, [read_raw(r, inputs.tp, view.input_layout) for r in raws])
    cache.save(f"baseline:{base_key}", baseline.tensors)
    return baseline


def _session_groups(
    inputs: CoverageInputs, session: str | None
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Manifest rows of ok vehicle images by (session, scene), of one session or all."""
    import pyarrow.parquet as pq

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in pq.read_table(inputs.layout.ingest.manifest).to_pylist():
        wanted = session is None or r["session"] == session
        if r["status"] == "ok" and r["source"] == "vehicle" and wanted:
            groups.setdefault((r["session"], r["scene"]), []).append(r)
    return groups


def check_sessions(
    inputs: CoverageInputs,
    cp: CoverageParams,
    seed: int,
    session: str | None = None,
    compute: ComputeParams | None = None,
) -> SessionReport:
    """{session: {scene: verdict}} for one or every vehicle session of the project: up to
    ``cp.max_images`` images per session and scene (by seeded rank) against the current
    encodings, with the evaluation set as the baseline. Per-image results are cached under
    ``paths.cache``, so only images new since the last run (or all, after re-quantization)
    run through the model."""
    from pipeline.data.curate import rank_key
    from pipeline.data.tensors import spec_key
    from pipeline.quantization import encodings_json

    model_file = inputs.root / inputs.model_path
    view = load_view(model_file, inputs.fold_batchnorm)
    enc_path = inputs.layout.quantize.encodings
    enc = encodings_json.for_model(encodings_json.read(enc_path), view, enc_path)
    key = [sha256_file(model_file), sha256_file(enc_path), spec_key(inputs.tp)]
    cache = TensorAccCache(inputs.root / inputs.paths.cache, [*key, str(inputs.fold_batchnorm)])
    baseline = _baseline(inputs, view, enc, cache)
    report: dict[str, dict[str, CoverageVerdict]] = {}
    measured = cached = 0
    groups = sorted(_session_groups(inputs, session).items())
    for (sess, scene), members in track(groups, "coverage: sessions and scenes"):
        members.sort(key=lambda r: rank_key(seed, str(r["sha256"])))
        picked = members[: cp.max_images]
        jobs = [
            ImageJob(
                model_file.absolute(),
                inputs.fold_batchnorm,
                enc_path.absolute(),
                inputs.tp,
                (inputs.root / inputs.paths.datasets / str(r["path"])).absolute(),
            )
            for r in picked
        ]
        # local: in this process (onnxruntime already uses every core); dask: on the cluster
        new, ran = _cached_map(
            jobs, [str(r["sha256"]) for r in picked], cache, compute or ComputeParams()
        )
        measured += ran
        cached += len(jobs) - ran
        report.setdefault(sess, {})[scene] = verdict(new, baseline, enc, cp)
    return SessionReport(report, measured, cached)
