"""Evaluate: float vs simulated-quantized outputs of every kept layer, per scene, with gates.

Metrics (spec §8), accumulated in float64 over every element of every evaluation image:

* SQNR, reference-based (ONNX Runtime ``qdq_loss_debug``, the default):
  ``20 log10(max(||x||, eps) / max(||x - y||, eps))`` with ``x`` the float tensor, ``y`` the
  quantized one and ``eps`` = float64 machine epsilon; pooled over a scene's images it is
  ``10 log10(sum x^2 / sum (x - y)^2)``, i.e. the tensors concatenated.
* SQNR, inference-based (QNN accuracy debugger ``SQNRVerifier``): signal power from ``y``.
* cosine similarity ``sum(x y) / sqrt(sum x^2 sum y^2)`` (1.0 when both are all zero);
* MSE, max absolute error, and the clip rate: the fraction of float activations outside the
  tensor's encoding range.

Modes: ``oneshot`` runs the whole quantized model so errors accumulate (QNN's
oneshot-layerwise); attribution re-runs with weights only and activations only quantized.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.model import ModelView, with_outputs
from pipeline.params import EvaluateParams, Gate, QuantizeParams, TensorsParams
from pipeline.quantize.simulate import Encodings, SimOptions, build_quantized_model
from pipeline.runtime import Runner
from pipeline.tensors import read_raw

EPS = float(np.finfo(np.float64).eps)
VARIANTS = ("full", "weights_only", "activations_only")


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """``10 log10(signal / noise)`` on sums of squares, each floored at eps^2 (ORT's guard)."""
    return 10.0 * math.log10(max(signal_power, EPS * EPS) / max(noise_power, EPS * EPS))


def cosine(sxy: float, sxx: float, syy: float) -> float:
    if sxx == 0.0 and syy == 0.0:
        return 1.0
    if sxx == 0.0 or syy == 0.0:
        return 0.0
    return sxy / math.sqrt(sxx * syy)


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
    worst_sqnr: float = math.inf
    worst_image: str = ""

    def add(
        self, x: NDArray[np.float32], y: NDArray[np.float32], lo: float, hi: float, image: str
    ) -> None:
        xd = x.astype(np.float64).ravel()
        yd = y.astype(np.float64).ravel()
        e = xd - yd
        sxx, see = float(xd @ xd), float(e @ e)
        self.n += xd.size
        self.sxx += sxx
        self.syy += float(yd @ yd)
        self.sxy += float(xd @ yd)
        self.see += see
        self.max_abs = max(self.max_abs, float(np.abs(e).max()) if e.size else 0.0)
        self.clipped += int(np.count_nonzero((x < lo) | (x > hi)))
        s = sqnr_db(sxx, see)
        if s < self.worst_sqnr:
            self.worst_sqnr, self.worst_image = s, image

    def sqnr(self, signal: str = "golden") -> float:
        return sqnr_db(self.sxx if signal == "golden" else self.syy, self.see)

    def summary(self, signal: str) -> dict[str, Any]:
        return {
            "sqnr_db": self.sqnr(signal),
            "cosine": cosine(self.sxy, self.sxx, self.syy),
            "mse": self.see / max(self.n, 1),
            "max_abs_error": self.max_abs,
            "clip_rate": self.clipped / max(self.n, 1),
            "worst_image": self.worst_image,
            "worst_image_sqnr_db": self.worst_sqnr if self.n else None,
        }


@dataclass(frozen=True)
class EvalImage:
    raw: Path
    path: str  # the source image, relative to datasets/
    scene: str


@dataclass
class SceneResult:
    images: int = 0
    layers: dict[str, dict[str, LayerAcc]] = field(default_factory=dict)  # variant -> tensor


def run_evaluation(
    view: ModelView,
    enc: Encodings,
    images: Sequence[EvalImage],
    tp: TensorsParams,
    attribution: bool = True,
    round_mode: str = "half_away",
    progress: Callable[[int], None] | None = None,
) -> dict[str, SceneResult]:
    """Run the float model and each quantized variant on every image; accumulate per scene."""
    names = view.kept_tensors
    float_runner = Runner(with_outputs(view.model, names))
    variants = VARIANTS if attribution else VARIANTS[:1]
    runners = {}
    for v in variants:
        opts = SimOptions(
            quantize_weights=v != "activations_only",
            quantize_activations=v != "weights_only",
            round_mode="half_even" if round_mode == "half_even" else "half_away",
        )
        qmodel = build_quantized_model(view, enc, opts)
        runners[v] = Runner(with_outputs(qmodel, names), optimization="basic")
    ranges = {t: (enc.activations[t].min, enc.activations[t].max) for t in names}
    results: dict[str, SceneResult] = {}
    for img in images:
        x = read_raw(img.raw, tp, view.input_layout)
        ref = float_runner.run(x, names)
        res = results.setdefault(img.scene, SceneResult())
        res.images += 1
        for v, runner in runners.items():
            out = runner.run(x, names)
            accs = res.layers.setdefault(v, {t: LayerAcc() for t in names})
            for t in names:
                lo, hi = ranges[t]
                accs[t].add(ref[t], out[t], lo, hi, img.path)
        if progress:
            progress(1)
    return results


def gate_for(scene: str, p: EvaluateParams) -> Gate:
    g = p.gates.get(scene)
    if g is None:
        return p.default_gate
    return Gate(
        cosine_min=g.cosine_min if g.cosine_min is not None else p.default_gate.cosine_min,
        sqnr_min_db=g.sqnr_min_db if g.sqnr_min_db is not None else p.default_gate.sqnr_min_db,
    )


@dataclass(frozen=True)
class GateFailure:
    scene: str
    metric: str
    value: float
    threshold: float
    worst_layer: str

    def line(self) -> str:
        return (
            f"scene {self.scene!r}: {self.metric} {self.value:.6g} is under its gate "
            f"{self.threshold:.6g}; worst layer {self.worst_layer}"
        )


def summarize(
    view: ModelView, results: dict[str, SceneResult], p: EvaluateParams
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]], list[GateFailure]]:
    """(metrics.json body per scene, per-scene layer rows, gate failures)."""
    metrics: dict[str, Any] = {}
    layer_rows: dict[str, list[dict[str, Any]]] = {}
    failures: list[GateFailure] = []
    sig = p.sqnr_signal
    for scene in sorted(results):
        res = results[scene]
        full = res.layers["full"]
        outs = {o: full[o].summary(sig) for o in view.outputs}
        out_sqnr = min(s["sqnr_db"] for s in outs.values())
        out_cos = min(s["cosine"] for s in outs.values())
        inner = [t for t in view.kept_tensors if t != view.input_name]
        worst = min(inner, key=lambda t: (full[t].sqnr(sig), t))
        rows = []
        for i, t in enumerate(view.kept_tensors):
            row = {"layer_index": i, "layer": t, "op_type": view.producers.get(t, "Input")}
            row |= {k: v for k, v in full[t].summary(sig).items()}
            if "weights_only" in res.layers:
                w_s = res.layers["weights_only"][t].sqnr(sig)
                a_s = res.layers["activations_only"][t].sqnr(sig)
                row |= {
                    "sqnr_weights_only_db": w_s,
                    "sqnr_activations_only_db": a_s,
                    "dominant": "weights" if w_s < a_s else "activations",
                }
            rows.append(row)
        layer_rows[scene] = rows
        worst_row = rows[view.kept_tensors.index(worst)]
        gate = gate_for(scene, p)
        verdict = {"passed": True, "cosine_min": gate.cosine_min, "sqnr_min_db": gate.sqnr_min_db}
        if gate.cosine_min is not None and out_cos < gate.cosine_min:
            failures.append(GateFailure(scene, "output cosine", out_cos, gate.cosine_min, worst))
            verdict["passed"] = False
        if gate.sqnr_min_db is not None and out_sqnr < gate.sqnr_min_db:
            failures.append(GateFailure(scene, "output SQNR dB", out_sqnr, gate.sqnr_min_db, worst))
            verdict["passed"] = False
        metrics[scene] = {
            "images": res.images,
            "output_sqnr_db": out_sqnr,
            "output_cosine": out_cos,
            "outputs": {
                o: {"sqnr_db": s["sqnr_db"], "cosine": s["cosine"]} for o, s in outs.items()
            },
            "worst_layer": worst,
            "worst_layer_sqnr_db": worst_row["sqnr_db"],
            "worst_layer_clip_rate": worst_row["clip_rate"],
            "worst_layer_dominant": worst_row.get("dominant", "n/a"),
            "gate": verdict,
        }
    return metrics, layer_rows, failures


def metrics_document(
    scenes: dict[str, Any],
    qp: QuantizeParams,
    ep: EvaluateParams,
    model_path: Path,
    model_sha: str,
) -> dict[str, Any]:
    """``metrics.json``: run facts, then one block per scene (hierarchical for dvc metrics)."""
    a, w = qp.activations, qp.weights
    granularity = "per-channel" if w.per_channel else "per-tensor"
    return {
        "run": {
            "model": model_path.as_posix(),
            "model_sha256": model_sha,
            "backend": qp.backend,
            "activations": f"{a.mode} {a.bitwidth}-bit",
            "weights": f"{w.mode} {w.bitwidth}-bit {granularity}",
            "bias_bitwidth": qp.bias_bitwidth,
            "sqnr_signal": ep.sqnr_signal,
        },
        "passed": all(s["gate"]["passed"] for s in scenes.values()),
        "scenes": scenes,
    }


LAYER_CSV_COLUMNS = (
    "layer_index",
    "layer",
    "op_type",
    "sqnr_db",
    "cosine",
    "mse",
    "max_abs_error",
    "clip_rate",
    "sqnr_weights_only_db",
    "sqnr_activations_only_db",
    "dominant",
)


def write_layer_csvs(folder: Path, layer_rows: dict[str, list[dict[str, Any]]]) -> None:
    """One CSV per scene (``dvc plots`` draws each file), stale scene files removed."""
    import csv
    import io

    from pipeline.atomic import write_text

    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.csv"):
        if stale.stem not in layer_rows:
            stale.unlink()
    for scene, rows in layer_rows.items():
        buf = io.StringIO()
        wr = csv.writer(buf, lineterminator="\n")
        wr.writerow(LAYER_CSV_COLUMNS)
        for r in rows:
            wr.writerow([_csv_cell(r.get(c, "")) for c in LAYER_CSV_COLUMNS])
        write_text(folder / f"{scene}.csv", buf.getvalue())


def _csv_cell(v: Any) -> str:
    return repr(v) if isinstance(v, float) else str(v)
