"""Coverage: does new field data fit the current encodings, or does it need re-quantization?

The float model runs on a session's images; each kept tensor's activations are compared with
its current encoding, tensor by tensor (no propagation, so it is cheap and says which tensor):

* clip rate: share of values more than half a step outside [min, max] of the encoding
  (clipping, e.g. glare; nearer values only round to the range's end, as inside it);
* local SQNR: quantize-dequantize the activations with the encoding and measure
  ``10 log10(sum x^2 / sum (x - q(x))^2)``; its drop against the same measure on the
  evaluation set the encodings were checked on predicts the SQNR loss (a low-light scene whose
  activations use a sliver of the range loses SQNR without clipping anything);
* range use: max |x| on the new data over the encoding's max |range|.

Verdict per session and scene: ``requantize: yes`` when any tensor clips more than
``clip_rate_max`` or loses more than ``sqnr_drop_db``; the reason names the tensor and figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from pipeline.model import ModelView, with_outputs
from pipeline.params import CoverageParams, PathsParams, TensorsParams
from pipeline.quantize.encoding import Encoding, dequantize, quantize
from pipeline.quantize.simulate import Encodings
from pipeline.runtime import Runner
from pipeline.tensors import preprocess


@dataclass
class _Acc:
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
        self.signal += float(xd @ xd)
        self.noise += float(err @ err)
        self.peak = max(self.peak, float(np.abs(xd).max()) if xd.size else 0.0)

    def sqnr(self) -> float:
        eps = np.finfo(np.float64).eps ** 2
        return 10 * math.log10(max(self.signal, eps) / max(self.noise, eps))


@dataclass
class Coverage:
    images: int = 0
    tensors: dict[str, _Acc] = field(default_factory=dict)


def measure(
    view: ModelView,
    enc: Encodings,
    inputs: Sequence[NDArray[np.float32]],
    progress: Callable[[int], None] | None = None,
) -> Coverage:
    names = [t for t in view.kept_tensors if t != view.input_name and t in enc.activations]
    runner = Runner(with_outputs(view.model, names))
    cov = Coverage()
    for x in inputs:
        out = runner.run(x, names)
        cov.images += 1
        for t in names:
            cov.tensors.setdefault(t, _Acc()).add(out[t], enc.activations[t])
        if progress:
            progress(1)
    return cov


def image_inputs(
    paths: Sequence[Path], tp: TensorsParams, layout: str
) -> list[NDArray[np.float32]]:
    out = []
    for p in paths:
        with Image.open(p) as im:
            im.load()
            x = preprocess(im, tp)
        if tp.layout != layout:
            x = x.transpose(0, 3, 1, 2) if layout == "NCHW" else x.transpose(0, 2, 3, 1)
        out.append(np.ascontiguousarray(x))
    return out


def verdict(new: Coverage, baseline: Coverage, enc: Encodings, p: CoverageParams) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for t, acc in new.tensors.items():
        base = baseline.tensors.get(t)
        e = enc.activations[t]
        drop = base.sqnr() - acc.sqnr() if base is not None else 0.0
        rows.append(
            {
                "tensor": t,
                "clip_rate": acc.clipped / max(acc.n, 1),
                "sqnr_db": acc.sqnr(),
                "baseline_sqnr_db": base.sqnr() if base is not None else None,
                "sqnr_drop_db": drop,
                "range_use": acc.peak / max(abs(e.min), abs(e.max), 1e-30),
            }
        )
    reasons = []
    worst_clip = max(rows, key=lambda r: (r["clip_rate"], r["tensor"]), default=None)
    if worst_clip and worst_clip["clip_rate"] > p.clip_rate_max:
        reasons.append(
            f"tensor {worst_clip['tensor']} clips {worst_clip['clip_rate']:.3%} of "
            f"its values (limit {p.clip_rate_max:.3%})"
        )
    worst_drop = max(rows, key=lambda r: (r["sqnr_drop_db"], r["tensor"]), default=None)
    if worst_drop and worst_drop["sqnr_drop_db"] > p.sqnr_drop_db:
        reasons.append(
            f"tensor {worst_drop['tensor']} loses {worst_drop['sqnr_drop_db']:.1f} dB of "
            f"quantization SQNR against the evaluation set (limit {p.sqnr_drop_db} dB; range use "
            f"{worst_drop['range_use']:.0%})"
        )
    rows.sort(key=lambda r: (-r["clip_rate"], -r["sqnr_drop_db"], r["tensor"]))
    return {
        "images": new.images,
        "requantize": "yes" if reasons else "no",
        "reason": "; ".join(reasons)
        or (
            f"no tensor clips more than {p.clip_rate_max:.3%} or loses more than "
            f"{p.sqnr_drop_db} dB"
        ),
        "tensors": rows[: p.report_tensors],
    }


def session_report(
    root: Path,
    paths: PathsParams,
    model_path: Path,
    fold_batchnorm: bool,
    tp: TensorsParams,
    cp: CoverageParams,
    seed: int,
    session: str | None = None,
) -> dict[str, dict[str, Any]]:
    """{session: {scene: verdict}} for one or every vehicle session of the project at ``root``:
    up to ``cp.max_images`` images per session and scene (by seeded rank) against the current
    encodings, with the evaluation set as the baseline."""
    import pyarrow.parquet as pq

    from pipeline import model
    from pipeline.curate import rank_key
    from pipeline.quantize import encodings_json
    from pipeline.tensors import read_raw

    out_dir = root / paths.out
    view = model.analyze(model.load(root / model_path), fold_batchnorm)
    enc_path = out_dir / "quantize" / "encodings.json"
    enc = encodings_json.for_model(encodings_json.read(enc_path), view, enc_path)
    index = pq.read_table(out_dir / "tensors" / "evaluation" / "index.parquet").to_pylist()
    baseline = measure(view, enc, [read_raw(root / r["raw"], tp, view.input_layout) for r in index])
    rows = [
        r
        for r in pq.read_table(out_dir / "ingest" / "manifest.parquet").to_pylist()
        if r["status"] == "ok"
        and r["source"] == "vehicle"
        and (session is None or r["session"] == session)
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["session"], r["scene"]), []).append(r)
    report: dict[str, dict[str, Any]] = {}
    for (sess, scene), members in sorted(groups.items()):
        members.sort(key=lambda r: rank_key(seed, str(r["sha256"])))
        files = [root / paths.datasets / str(r["path"]) for r in members[: cp.max_images]]
        new = measure(view, enc, image_inputs(files, tp, view.input_layout))
        report.setdefault(sess, {})[scene] = verdict(new, baseline, enc, cp)
    return report
