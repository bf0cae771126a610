"""Remedies side by side: which calibration or precision choice makes each scene pass its gate?

For every scene of the evaluation set, each remedy's encodings are scored on that scene's
evaluation images (through the backend seam, :class:`pipeline.analysis.evaluate.OneshotScorer`)
and checked against the scene's gate (``evaluate.gates``):

* ``generic``: calibrate on generic photographs only (where a project starts);
* ``union``: all curated calibration images, every scene together (the quantize stage's
  encodings);
* ``enhanced`` / ``percentile``: the union set with those activation modes;
* ``per_scene``: calibrate on that scene's calibration images only (one set of encodings per
  scene, which a deployment can switch between);
* ``mixed16_K``: the union encodings with the K activations that lose most on their own
  (layerwise SQNR from the evaluate stage, :func:`pipeline.analysis.artifacts.worst_rows`)
  raised to 16 bits, K in ``remedies.mixed16``; QNN takes a bit-width per tensor in the
  overrides file. Cost: K tensors at 16 bits;
* ``a16_all``: every activation at 16 bits (QNN's A16W8).

The chosen remedy per scene is the first that passes in the order above (cheapest first); its
encodings are written. Statistics come from the calibration cache: min/max cost no model run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.analysis.artifacts import LayerRow, RemedyRow, RemedyVerdict, worst_rows
from pipeline.analysis.evaluate import OneshotScorer
from pipeline.analysis.gates import gate_failures, gate_for, gate_record
from pipeline.analysis.runs import EvalImage
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


@dataclass(frozen=True)
class Calibrator:
    """Encodings from cached calibration statistics: what travels with every calibration of
    a remedy (the model view, tensor spec, quantize params, model hash and cache folder)."""

    view: ModelView
    tp: TensorsParams
    qp: QuantizeParams
    model_sha: str
    cache: Path | None

    def encodings(self, raws: Sequence[Path], qp: QuantizeParams | None = None) -> Encodings:
        """Encodings of ``raws`` with ``qp`` (default: the configured quantize params)."""
        q = qp or self.qp
        hist = q.activations.mode in calibrate.HISTOGRAM_MODES
        stats = calibrate.collect(
            self.view, raws, self.tp, self.model_sha, self.cache, hist, q.batch_size
        )
        return calibrate.compute_encodings(self.view, stats, q)

    def with_16bit(
        self, enc: Encodings, stats_raws: Sequence[Path], tensors: Sequence[str]
    ) -> Encodings:
        """``enc`` with ``tensors`` at 16 bits (tf, over the ranges of ``stats_raws``)."""
        stats = calibrate.collect(self.view, stats_raws, self.tp, self.model_sha, self.cache)
        acts = dict(enc.activations)
        for t in tensors:
            lo, hi = stats.minmax.range_of(t)
            acts[t] = tf_encoding(lo, hi, 16, self.qp.min_range_value)
        return replace(enc, activations=acts)


def shared(calib: Calibrator, cal: Sequence[CalImage], union: Encodings) -> list[Remedy]:
    """The remedies that do not depend on the scene (computed once)."""
    all_raws = [c.raw for c in cal]
    out = []
    generic = [c.raw for c in cal if c.source == "generic"]
    if generic:
        cost = f"{len(generic)} generic calibration images"
        out.append(Remedy("generic", calib.encodings(generic), cost))
    out.append(Remedy("union", union, f"{len(all_raws)} calibration images, all scenes"))
    for mode in ("enhanced", "percentile"):
        if calib.qp.activations.mode != mode:
            q2 = calib.qp.with_activation_mode(mode)
            cost = f"activations {mode}, same images"
            out.append(Remedy(mode, calib.encodings(all_raws, q2), cost))
    return out


def for_scene(
    calib: Calibrator,
    cal: Sequence[CalImage],
    scene: str,
    union: Encodings,
    worst_own: Sequence[str],
    ladder: Sequence[int],
) -> list[Remedy]:
    """per_scene encodings, then 16-bit activations: the K worst for each K, then all."""
    all_raws = [c.raw for c in cal]
    out = []
    own = [c.raw for c in cal if c.scene == scene]
    if own:
        cost = f"{len(own)} {scene} calibration images; one encoding set per scene"
        out.append(Remedy("per_scene", calib.encodings(own), cost))
    steps = [k for k in ladder if k < len(worst_own)] + [len(worst_own)]
    for k in steps:
        picked = list(worst_own[:k])
        name = "a16_all" if k == len(worst_own) else f"mixed16_{k}"
        cost = (
            f"all {k} activations at 16 bits"
            if name == "a16_all"
            else f"{k} activations at 16 bits: {', '.join(picked)}"
        )
        out.append(Remedy(name, calib.with_16bit(union, all_raws, picked), cost))
    return out


def evaluate_remedies(
    scorer: OneshotScorer, remedies: Sequence[Remedy], images: Sequence[EvalImage], scene: str
) -> list[RemedyRow]:
    """Each remedy scored on ``scene``'s images against the scene's gate."""
    rows = []
    mine = [i for i in images if i.scene == scene]
    for r in remedies:
        m = scorer.scenes(r.encodings, mine)[scene]
        fails = gate_failures(scene, m)
        rows.append(
            RemedyRow(
                remedy=r.name,
                cost=r.cost,
                output_sqnr_db=m.output_sqnr_db,
                output_cosine=m.output_cosine,
                face_miss_rate=m.face_miss_rate,
                passes_gate=not fails,
                failures=[f.line() for f in fails],
            )
        )
    return rows


def metrics(verdicts: Mapping[str, RemedyVerdict]) -> dict[str, dict[str, dict[str, float]]]:
    """DVC metrics (numbers only): per scene and remedy, output SQNR and cosine and whether it
    passes the scene's gate (1/0), so `dvc metrics diff` shows what new data changed."""
    return {
        scene: {
            r.remedy: {
                "output_sqnr_db": r.output_sqnr_db,
                "output_cosine": r.output_cosine,
                "passes_gate": int(r.passes_gate),
            }
            for r in v.remedies
        }
        for scene, v in sorted(verdicts.items())
    }


def choose(rows: Sequence[RemedyRow], scene: str, ep: EvaluateParams) -> RemedyVerdict:
    """The cheapest passing remedy (the first in ``rows``), or why none passes."""
    passing = [r for r in rows if r.passes_gate]
    best = max(rows, key=lambda r: r.output_sqnr_db)
    return RemedyVerdict(
        gate=gate_record(gate_for(scene, ep)),
        chosen=passing[0].remedy if passing else None,
        why=(
            f"{passing[0].remedy} is the cheapest remedy that passes ({passing[0].cost})"
            if passing
            else f"no remedy passes; the best is {best.remedy} at {best.output_sqnr_db:.2f} dB"
        ),
        remedies=list(rows),
    )


@dataclass(frozen=True)
class SceneRemedies:
    """A scene's verdict and the chosen remedy (None when none passes)."""

    verdict: RemedyVerdict
    chosen: Remedy | None


def run(
    calib: Calibrator,
    scorer: OneshotScorer,
    cal: Sequence[CalImage],
    union: Encodings,
    images: Sequence[EvalImage],
    layer_rows: Mapping[str, Sequence[LayerRow]],
    ladder: Sequence[int],
) -> dict[str, SceneRemedies]:
    """Every scene of ``images``: the shared remedies and its own, scored, and the choice.
    (Seven parameters: the two bundles, the calibration and evaluation sets, the union
    encodings, the evaluate stage's layer rows and the ladder are each their own input.)"""
    common = shared(calib, cal, union)
    out = {}
    for scene in sorted({i.scene for i in images}):
        worst = [r.layer for r in worst_rows(layer_rows.get(scene, []))]
        candidates = common + for_scene(calib, cal, scene, union, worst, ladder)
        verdict = choose(evaluate_remedies(scorer, candidates, images, scene), scene, scorer.ep)
        chosen = next((c for c in candidates if c.name == verdict.chosen), None)
        out[scene] = SceneRemedies(verdict, chosen)
    return out
