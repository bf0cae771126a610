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

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.analysis.artifacts import (
    LayerRow,
    RemedyRow,
    RemedyVerdict,
    SearchRecord,
    worst_first,
    worst_rows,
)
from pipeline.analysis.evaluate import OneshotScorer
from pipeline.analysis.gates import gate_failures, gate_for, gate_record, meets
from pipeline.analysis.precision import raise16
from pipeline.analysis.runs import EvalImage
from pipeline.analysis.search import OutputScorer, Score, Search, run_search
from pipeline.analysis.summary import headline_outputs
from pipeline.backends.embedded import EmbeddedBackend
from pipeline.calibration.collect import Calibrator
from pipeline.data.tensors import read_raw
from pipeline.graph.rewrite import with_outputs
from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView
from pipeline.params import EvaluateParams, QuantizeParams, RemediesParams, TensorsParams
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.observers import MinMax


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


def calibrated(
    calib: Calibrator, raws: Sequence[Path], qp: QuantizeParams | None = None
) -> Encodings:
    """Encodings of ``raws`` (statistics from the cache) with ``qp`` (default: the
    calibrator's quantize params)."""
    c = calib if qp is None else replace(calib, qp=qp)
    return c.compute_data(c.collect_data(raws))


def ranges_of(calib: Calibrator, raws: Sequence[Path]) -> MinMax:
    """Every kept tensor's min/max over ``raws`` (the ranges a 16-bit tensor is encoded over)."""
    return calib.collect_data(raws, histograms=False).minmax


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
    ranges = ranges_of(calib, all_raws)
    out = []
    own = [c.raw for c in cal if c.scene == scene]
    if own:
        cost = f"{len(own)} {scene} calibration images; one encoding set per scene"
        out.append(Remedy("per_scene", calibrated(calib, own), cost))
    steps = [k for k in ladder if k < len(worst_own)] + [len(worst_own)]
    for k in steps:
        picked = list(worst_own[:k])
        name = "a16_all" if k == len(worst_own) else f"mixed16_{k}"
        cost = (
            f"all {k} activations at 16 bits"
            if name == "a16_all"
            else f"{k} activations at 16 bits: {', '.join(picked)}"
        )
        out.append(Remedy(name, raise16(calib.view, calib.qp, union, ranges, picked), cost))
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


@dataclass(frozen=True)
class Inputs:
    """What the remedies of every scene read: the calibration and evaluation sets, the union
    encodings, the evaluate stage's layer rows and the remedies params."""

    cal: Sequence[CalImage]
    images: Sequence[EvalImage]
    union: Encodings
    layer_rows: Mapping[str, Sequence[LayerRow]]
    rp: RemediesParams


ALL_SCENES = "all_scenes"


@dataclass(frozen=True)
class Searched:
    """The searched 16-bit sets: per scene, and for every scene at once (``joint``)."""

    records: dict[str, SearchRecord]
    joint: SearchRecord | None
    remedies: dict[str, Remedy]  # by scene, and ALL_SCENES

    def remedy(self, key: str) -> Remedy | None:
        return self.remedies.get(key)


def tensor_sizes(view: ModelView, image: EvalImage, tp: TensorsParams) -> dict[str, int]:
    """Elements of every kept tensor for one input (batch 1): the extra bytes of 16 bits."""
    runner = Runner(with_outputs(view.model, view.kept_tensors))
    out = runner.run(read_raw(image.raw, tp, view.input_layout), view.kept_tensors)
    return {t: int(v.size) for t, v in out.items()}


def joint_seeds(layer_rows: Mapping[str, Sequence[LayerRow]]) -> list[str]:
    """Layers worst first by the worst scene's own (else accumulated) SQNR."""
    by: dict[str, list[LayerRow]] = {}
    for rows in layer_rows.values():
        for r in rows:
            if not r.is_input:
                by.setdefault(r.layer, []).append(r)
    return worst_first(
        (t, min(r.blame_sqnr_db for r in rs), min(r.sqnr_db for r in rs)) for t, rs in by.items()
    )


def _remedy(name: str, record: SearchRecord, enc: Encodings, sizes: Mapping[str, int]) -> Remedy:
    chosen = record.chosen or []
    extra = sum(sizes[t] for t in chosen)
    cost = (
        f"{len(chosen)} activations at 16 bits (+{extra} bytes per inference; "
        f"{record.evaluations} evaluations): {', '.join(chosen)}"
    )
    return Remedy(name, enc, cost)


def search16(calib: Calibrator, scorer: OneshotScorer, inputs: Inputs) -> Searched:
    """The fewest 16-bit activations per scene and for every scene at once
    (:mod:`pipeline.analysis.search`), scored on the outputs through the backend seam."""
    view, rp = calib.view, inputs.rp
    raws = [c.raw for c in inputs.cal]
    ranges = ranges_of(calib, raws)
    backend = scorer.backend or EmbeddedBackend(scorer.options().mode)
    detection = (scorer.decoder, scorer.ep.detection_threshold)
    every = OutputScorer(
        view, inputs.images, calib.tp, headline_outputs(view, scorer.ep), detection
    )
    sizes = tensor_sizes(view, inputs.images[0], calib.tp)
    scenes = sorted({i.scene for i in inputs.images})
    gates = {s: gate_record(gate_for(s, scorer.ep)) for s in scenes}

    def encodings(tensors: Collection[str]) -> Encodings:
        return raise16(view, calib.qp, inputs.union, ranges, tensors)

    def for_scene(scene: str) -> Callable[[frozenset[str]], tuple[Score, bool]]:
        mine = every.only(scene)

        def one(tensors: frozenset[str]) -> tuple[Score, bool]:
            got = mine.score(backend, encodings(tensors))[scene]
            return got, meets(got, gates[scene])

        return one

    def joint(tensors: frozenset[str]) -> tuple[Score, bool]:
        got = every.score(backend, encodings(tensors))
        worst = Score(
            min(g.output_sqnr_db for g in got.values()),
            min(g.output_cosine for g in got.values()),
            max(
                (g.face_miss_rate for g in got.values() if g.face_miss_rate is not None),
                default=None,
            ),
        )
        return worst, all(meets(got[s], gates[s]) for s in scenes)

    records, remedies = {}, {}
    searches = {
        s: (for_scene(s), [r.layer for r in worst_rows(inputs.layer_rows.get(s, []))])
        for s in scenes
    }
    searches[ALL_SCENES] = (joint, joint_seeds(inputs.layer_rows))
    for key, (fn, seeds) in searches.items():
        record = run_search(Search(fn, sizes, rp.search_budget), seeds, rp.search_measured)
        records[key] = record
        if record.chosen:
            name = "search16_all_scenes" if key == ALL_SCENES else "search16"
            remedies[key] = _remedy(name, record, encodings(record.chosen), sizes)
    return Searched(records, records.pop(ALL_SCENES), remedies)


def run(calib: Calibrator, scorer: OneshotScorer, inputs: Inputs) -> dict[str, SceneRemedies]:
    """Every scene of the evaluation images: the shared remedies, its own, the searched 16-bit
    sets (its own and the one for every scene at once), scored, and the cheapest that passes."""
    common = shared(calib, inputs.cal, inputs.union)
    found = search16(calib, scorer, inputs)
    out = {}
    for scene in sorted({i.scene for i in inputs.images}):
        worst = [r.layer for r in worst_rows(inputs.layer_rows.get(scene, []))]
        own = for_scene(calib, inputs.cal, scene, inputs.union, worst, inputs.rp.mixed16)
        searched = [r for r in (found.remedy(scene), found.remedy(ALL_SCENES)) if r is not None]
        per_scene = [r for r in own if r.name == "per_scene"]
        ladder = [r for r in own if r.name != "per_scene"]
        candidates = common + per_scene + searched + ladder
        rows = evaluate_remedies(scorer, candidates, inputs.images, scene)
        verdict = choose(rows, scene, scorer.ep).model_copy(
            update={"search": found.records.get(scene), "search_all_scenes": found.joint}
        )
        chosen = next((c for c in candidates if c.name == verdict.chosen), None)
        out[scene] = SceneRemedies(verdict, chosen)
    return out
