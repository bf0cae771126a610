"""Remedies side by side: which calibration or precision choice makes each scene pass its gate?

For every scene of the evaluation set, each remedy's encodings are scored on that scene's
evaluation images (through the backend seam, :class:`pipeline.analysis.evaluate.OneshotScorer`)
and checked against the scene's gate (``evaluate.gates``). In cost order:

* ``generic``: calibrate on generic photographs only (where a project starts);
* ``union``: all curated calibration images, every scene together (the quantize stage's
  encodings);
* ``enhanced`` / ``percentile``: the union set with those activation modes;
* ``per_tensor_weights`` (or ``per_channel_weights`` when the project quantizes weights per
  tensor): the union set with the other weight granularity (QNN converters:
  ``--use_per_channel_quantization``);
* ``per_scene``: calibrate on that scene's calibration images only. Deployment cost: one model
  per scene, which the car must switch between;
* ``search16`` / ``search16_all_scenes``: the fewest 16-bit activations found for the scene, and
  for every scene at once (:mod:`pipeline.analysis.search_scenes`);
* ``mixed16_K``: the union encodings with the K activations that lose most on their own raised
  to 16 bits, K in ``remedies.mixed16``; ``a16_all``: every activation at 16 bits (A16W8).

16-bit *weights* are not offered: Qualcomm's public QNN documentation describes 16-bit integer
inference as 16-bit activations with 8-bit weights (``--act_bw 16 --weight_bw 8``; README,
"Weight-side remedies"), so a W16 remedy could not be deployed as measured.

Beside the remedies with encodings, a scene that field coverage says clips gets the proposal to
add in-vehicle captures of it (:mod:`pipeline.analysis.captures`). The chosen remedy per scene
is the first that passes, in the order above; the configuration for the car is the first
scene-independent one (:data:`pipeline.analysis.remedy_artifacts.SHARED`) that passes every scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.analysis.artifacts import worst_rows
from pipeline.analysis.candidates import (
    CalImage,
    Inputs,
    Remedy,
    calibrated,
    ranges_of,
)
from pipeline.analysis.captures import proposal
from pipeline.analysis.evaluate import OneshotScorer
from pipeline.analysis.gates import gate_failures, gate_for, gate_record
from pipeline.analysis.precision import raise16
from pipeline.analysis.remedy_artifacts import SHARED, RemedyRow, RemedyVerdict
from pipeline.analysis.runs import EvalImage
from pipeline.analysis.search_scenes import ALL_SCENES, search16
from pipeline.calibration.collect import Calibrator
from pipeline.params import EvaluateParams, WeightQuant
from pipeline.progress import track
from pipeline.quantization.encodings import Encodings


def weight_remedy(calib: Calibrator, raws: Sequence[CalImage]) -> Remedy:
    """The union set with the other weight granularity than the project's."""
    w = calib.qp.weights
    if w.per_channel:
        other = WeightQuant(mode=w.mode, bitwidth=w.bitwidth, per_channel=False)
        name, cost = "per_tensor_weights", "weights per tensor (one scale per weight tensor)"
    else:  # per-channel weights are symmetric in QNN (spec §3.4)
        other = WeightQuant(mode="symmetric", bitwidth=w.bitwidth, per_channel=True)
        name = "per_channel_weights"
        cost = "weights per output channel (--use_per_channel_quantization)"
    qp = calib.qp.model_copy(update={"weights": other})
    return Remedy(name, calibrated(calib, [c.raw for c in raws], qp), cost)


def shared(calib: Calibrator, cal: Sequence[CalImage], union: Encodings) -> list[Remedy]:
    """The remedies that do not depend on the scene (computed once)."""
    all_raws = [c.raw for c in cal]
    out = []
    generic = [c.raw for c in cal if c.source == "generic"]
    if generic:
        cost = f"{len(generic)} generic calibration images"
        out.append(Remedy("generic", calibrated(calib, generic), cost))
    out.append(Remedy("union", union, f"{len(all_raws)} calibration images, all scenes"))
    for mode in ("enhanced", "percentile"):
        if calib.qp.activations.mode != mode:
            q2 = calib.qp.with_activation_mode(mode)
            cost = f"activations {mode}, same images"
            out.append(Remedy(mode, calibrated(calib, all_raws, q2), cost))
    out.append(weight_remedy(calib, cal))
    return out


def per_scene(calib: Calibrator, cal: Sequence[CalImage], scene: str) -> list[Remedy]:
    """Encodings from the scene's own calibration images (none when it has none)."""
    own = [c.raw for c in cal if c.scene == scene]
    if not own:
        return []
    cost = (
        f"{len(own)} {scene} calibration images; deployment: one model per scene, "
        "switched by scene in the car"
    )
    return [Remedy("per_scene", calibrated(calib, own), cost)]


def ladder(
    calib: Calibrator, inputs: Inputs, worst_own: Sequence[str], ranges_raws: Sequence[CalImage]
) -> list[Remedy]:
    """16-bit activations: the K worst (own error) for each K, then all."""
    ranges = ranges_of(calib, [c.raw for c in ranges_raws])
    out = []
    steps = [k for k in inputs.rp.mixed16 if k < len(worst_own)] + [len(worst_own)]
    for k in steps:
        picked = list(worst_own[:k])
        name = "a16_all" if k == len(worst_own) else f"mixed16_{k}"
        cost = (
            f"all {k} activations at 16 bits"
            if name == "a16_all"
            else f"{k} activations at 16 bits: {', '.join(picked)}"
        )
        out.append(Remedy(name, raise16(calib.view, calib.qp, inputs.union, ranges, picked), cost))
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
    """A scene's verdict, the chosen remedy (None when none passes) and every remedy tried."""

    verdict: RemedyVerdict
    chosen: Remedy | None
    tried: Sequence[Remedy]


@dataclass(frozen=True)
class Found:
    """Every scene's remedies, and the configuration for the car (None: none passes all)."""

    scenes: dict[str, SceneRemedies]
    ship: Remedy | None


def ship(found: dict[str, SceneRemedies]) -> Remedy | None:
    """The first scene-independent remedy, in cost order, that passes every scene's gate."""
    scenes = sorted(found)
    if not scenes:
        return None
    for r in found[scenes[0]].tried:
        if r.name in SHARED and all(
            any(row.remedy == r.name and row.passes_gate for row in found[s].verdict.remedies)
            for s in scenes
        ):
            return r
    return None


def run(calib: Calibrator, scorer: OneshotScorer, inputs: Inputs) -> Found:
    """Every scene of the evaluation images: the shared remedies, its own, the searched 16-bit
    sets (its own and the one for every scene at once), scored, and the cheapest that passes;
    then the one configuration for every scene."""
    common = shared(calib, inputs.cal, inputs.union)
    searched = search16(calib, scorer, inputs)
    out = {}
    for scene in track(sorted({i.scene for i in inputs.images}), "remedies: scenes"):
        worst = [r.layer for r in worst_rows(inputs.layer_rows.get(scene, []))]
        found = [r for r in (searched.remedy(scene), searched.remedy(ALL_SCENES)) if r]
        candidates = (
            common
            + per_scene(calib, inputs.cal, scene)
            + found
            + ladder(calib, inputs, worst, inputs.cal)
        )
        rows = evaluate_remedies(scorer, candidates, inputs.images, scene)
        verdict = choose(rows, scene, scorer.ep).model_copy(
            update={
                "search": searched.records.get(scene),
                "search_all_scenes": searched.joint,
                "captures": proposal(scene, inputs.field),
            }
        )
        chosen = next((c for c in candidates if c.name == verdict.chosen), None)
        out[scene] = SceneRemedies(verdict, chosen, candidates)
    return Found(out, ship(out))
