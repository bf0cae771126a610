"""Remedies side by side: which calibration or precision choice makes each scene pass its gate?

For every scene of the evaluation set, each remedy's encodings are simulated on that scene's
evaluation images and checked against the scene's gate (``evaluate.gates``):

* ``generic``: calibrate on generic photographs only (where a project starts);
* ``union``: all curated calibration images, every scene together (the quantize stage's
  encodings);
* ``enhanced`` / ``percentile``: the union set with those activation modes;
* ``per_scene``: calibrate on that scene's calibration images only (one set of encodings per
  scene, which a deployment can switch between);
* ``mixed16_K``: the union encodings with the K activations that lose most on their own
  (layerwise SQNR from the evaluate stage) raised to 16 bits, K in ``remedies.mixed16``; QNN
  takes a bit-width per tensor in the overrides file. Cost: K tensors at 16 bits;
* ``a16_all``: every activation at 16 bits (QNN's A16W8).

The chosen remedy per scene is the first that passes in the order above (cheapest first); its
encodings are written. Statistics come from the calibration cache: min/max cost no model run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.analysis.evaluate import EvalImage, gate_failures, gate_for, oneshot_metrics
from pipeline.calibration import calibrate
from pipeline.graph.view import ModelView
from pipeline.params import EvaluateParams, QuantizeParams, TensorsParams
from pipeline.quantization.encoding import tf_encoding
from pipeline.quantization.encodings import Encodings


@dataclass(frozen=True)
class CalImage:
    raw: Path
    scene: str
    source: str


@dataclass(frozen=True)
class Remedy:
    name: str
    encodings: Encodings
    cost: str


def _encodings(
    view: ModelView,
    raws: Sequence[Path],
    tp: TensorsParams,
    qp: QuantizeParams,
    model_sha: str,
    cache: Path | None,
) -> Encodings:
    hist = qp.activations.mode in calibrate.HISTOGRAM_MODES
    stats = calibrate.collect(view, raws, tp, model_sha, cache, hist, qp.batch_size)
    return calibrate.compute_encodings(view, stats, qp)


def with_16bit(
    view: ModelView,
    enc: Encodings,
    stats_raws: Sequence[Path],
    tensors: Sequence[str],
    tp: TensorsParams,
    qp: QuantizeParams,
    model_sha: str,
    cache: Path | None,
) -> Encodings:
    stats = calibrate.collect(view, stats_raws, tp, model_sha, cache)
    acts = dict(enc.activations)
    for t in tensors:
        lo, hi = stats.minmax.range_of(t)
        acts[t] = tf_encoding(lo, hi, 16, qp.min_range_value)
    return replace(enc, activations=acts)


def shared(
    view: ModelView,
    cal: Sequence[CalImage],
    union: Encodings,
    tp: TensorsParams,
    qp: QuantizeParams,
    model_sha: str,
    cache: Path | None,
) -> list[Remedy]:
    """The remedies that do not depend on the scene (computed once)."""
    all_raws = [c.raw for c in cal]
    out = []
    generic = [c.raw for c in cal if c.source == "generic"]
    if generic:
        out.append(
            Remedy(
                "generic",
                _encodings(view, generic, tp, qp, model_sha, cache),
                f"{len(generic)} generic calibration images",
            )
        )
    out.append(Remedy("union", union, f"{len(all_raws)} calibration images, all scenes"))
    for mode in ("enhanced", "percentile"):
        if qp.activations.mode != mode:
            q2 = qp.with_activation_mode(mode)
            out.append(
                Remedy(
                    mode,
                    _encodings(view, all_raws, tp, q2, model_sha, cache),
                    f"activations {mode}, same images",
                )
            )
    return out


def for_scene(
    view: ModelView,
    cal: Sequence[CalImage],
    scene: str,
    union: Encodings,
    worst_own: Sequence[str],
    ladder: Sequence[int],
    tp: TensorsParams,
    qp: QuantizeParams,
    model_sha: str,
    cache: Path | None,
) -> list[Remedy]:
    """per_scene encodings, then 16-bit activations: the K worst for each K, then all."""
    all_raws = [c.raw for c in cal]
    out = []
    own = [c.raw for c in cal if c.scene == scene]
    if own:
        out.append(
            Remedy(
                "per_scene",
                _encodings(view, own, tp, qp, model_sha, cache),
                f"{len(own)} {scene} calibration images; one encoding set per scene",
            )
        )
    steps = [k for k in ladder if k < len(worst_own)] + [len(worst_own)]
    for k in steps:
        picked = list(worst_own[:k])
        name = "a16_all" if k == len(worst_own) else f"mixed16_{k}"
        cost = (
            f"all {k} activations at 16 bits"
            if name == "a16_all"
            else f"{k} activations at 16 bits: {', '.join(picked)}"
        )
        out.append(
            Remedy(name, with_16bit(view, union, all_raws, picked, tp, qp, model_sha, cache), cost)
        )
    return out


def evaluate_remedies(
    view: ModelView,
    remedies: Sequence[Remedy],
    images: Sequence[EvalImage],
    scene: str,
    tp: TensorsParams,
    ep: EvaluateParams,
    decoder: str,
    round_mode: str,
) -> list[dict[str, Any]]:
    rows = []
    mine = [i for i in images if i.scene == scene]
    for r in remedies:
        m = oneshot_metrics(view, r.encodings, mine, tp, ep, decoder, round_mode)[scene]
        fails = gate_failures(scene, m)
        rows.append(
            {
                "remedy": r.name,
                "cost": r.cost,
                "output_sqnr_db": m["output_sqnr_db"],
                "output_cosine": m["output_cosine"],
                "face_miss_rate": m.get("faces", {}).get("miss_rate"),
                "passes_gate": not fails,
                "failures": [f.line() for f in fails],
            }
        )
    return rows


def metrics(verdicts: dict[str, Any]) -> dict[str, Any]:
    """DVC metrics (numbers only): per scene and remedy, output SQNR and cosine and whether it
    passes the scene's gate (1/0), so `dvc metrics diff` shows what new data changed."""
    return {
        scene: {
            r["remedy"]: {
                "output_sqnr_db": r["output_sqnr_db"],
                "output_cosine": r["output_cosine"],
                "passes_gate": int(r["passes_gate"]),
            }
            for r in v["remedies"]
        }
        for scene, v in sorted(verdicts.items())
    }


def choose(rows: Sequence[dict[str, Any]], scene: str, ep: EvaluateParams) -> dict[str, Any]:
    gate = gate_for(scene, ep)
    passing = [r for r in rows if r["passes_gate"]]
    best = max(rows, key=lambda r: r["output_sqnr_db"])
    return {
        "gate": {k: v for k, v in vars(gate).items() if v is not None},
        "chosen": passing[0]["remedy"] if passing else None,
        "why": (
            f"{passing[0]['remedy']} is the cheapest remedy that passes ({passing[0]['cost']})"
            if passing
            else f"no remedy passes; the best is {best['remedy']} at "
            f"{best['output_sqnr_db']:.2f} dB"
        ),
        "remedies": list(rows),
    }
