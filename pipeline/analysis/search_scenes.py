"""The 16-bit search (:mod:`pipeline.analysis.search`) run per scene and for every scene at
once (the one model a car ships), on the model's outputs through the backend seam.

Candidates are the kept tensors upstream of the outputs the gate reads (:func:`upstream_of`):
the headline outputs (``evaluate.outputs``), plus the detection decoder's outputs when a scene's
gate bounds the face miss rate. Each record also carries what AIMET's mixed precision and NNCF's
``quantize_with_accuracy_control`` would spend for the same gate (:mod:`pipeline.analysis.anchors`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import onnx

from pipeline.analysis.anchors import estimates
from pipeline.analysis.artifacts import GateRecord, LayerRow, worst_first, worst_rows
from pipeline.analysis.candidates import Inputs, Remedy, ranges_of
from pipeline.analysis.evaluate import OneshotScorer
from pipeline.analysis.gates import gate_for, gate_record, meets
from pipeline.analysis.precision import raise16
from pipeline.analysis.remedy_artifacts import SearchRecord
from pipeline.analysis.runs import EvalImage
from pipeline.analysis.search import OutputScorer, Score, Search, run_search
from pipeline.analysis.summary import headline_outputs
from pipeline.backends.base import Backend
from pipeline.backends.embedded import EmbeddedBackend
from pipeline.calibration.collect import Calibrator
from pipeline.data.tensors import read_raw
from pipeline.graph.rewrite import with_outputs
from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView
from pipeline.params import TensorsParams
from pipeline.progress import track
from pipeline.quantization.encodings import Encodings

ALL_SCENES = "all_scenes"
Evaluate = Callable[[frozenset[str]], tuple[Score, bool]]


@dataclass(frozen=True)
class Searched:
    """The searched 16-bit sets: per scene, and for every scene at once (``joint``)."""

    records: dict[str, SearchRecord]
    joint: SearchRecord | None
    remedies: dict[str, Remedy]  # by scene, and ALL_SCENES

    def remedy(self, key: str) -> Remedy | None:
        return self.remedies.get(key)


def upstream_of(graph: onnx.GraphProto, outputs: Iterable[str]) -> set[str]:
    """Every tensor with a path to one of ``outputs`` (the outputs included): walking the
    producers back from the outputs. A tensor outside this set cannot change them."""
    producer = {o: node for node in graph.node for o in node.output}
    seen: set[str] = set()
    stack = list(outputs)
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        node = producer.get(t)
        if node is not None:
            stack.extend(i for i in node.input if i)
    return seen


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


@dataclass(frozen=True)
class _Scoring:
    """What every evaluation of the search shares: the scorer with its float references, the
    backend, each scene's gate."""

    every: OutputScorer
    backend: Backend
    gates: Mapping[str, GateRecord]

    def for_scene(self, scene: str, encodings: Callable[[Collection[str]], Encodings]) -> Evaluate:
        mine = self.every.only(scene)

        def one(tensors: frozenset[str]) -> tuple[Score, bool]:
            got = mine.score(self.backend, encodings(tensors))[scene]
            return got, meets(got, self.gates[scene])

        return one

    def joint(self, encodings: Callable[[Collection[str]], Encodings]) -> Evaluate:
        def every_scene(tensors: frozenset[str]) -> tuple[Score, bool]:
            got = self.every.score(self.backend, encodings(tensors))
            worst = Score(
                min(g.output_sqnr_db for g in got.values()),
                min(g.output_cosine for g in got.values()),
                max(
                    (g.face_miss_rate for g in got.values() if g.face_miss_rate is not None),
                    default=None,
                ),
            )
            return worst, all(meets(got[s], self.gates[s]) for s in self.gates)

        return every_scene


def gated_outputs(view: ModelView, scorer: OneshotScorer, scenes: Sequence[str]) -> list[str]:
    """The outputs a gate reads: the headline ones, and the decoder's when a gate bounds the
    face miss rate."""
    gated = headline_outputs(view, scorer.ep)
    if any(gate_for(s, scorer.ep).miss_rate_max is not None for s in scenes):
        gated += [o for o in view.outputs if o not in gated]
    return gated


def search16(calib: Calibrator, scorer: OneshotScorer, inputs: Inputs) -> Searched:
    """The fewest 16-bit activations per scene and for every scene at once, scored on the
    outputs through the backend seam."""
    view, rp = calib.view, inputs.rp
    ranges = ranges_of(calib, [c.raw for c in inputs.cal])
    detection = (scorer.decoder, scorer.ep.detection_threshold)
    headline = headline_outputs(view, scorer.ep)
    every = OutputScorer(view, inputs.images, calib.tp, headline, detection)
    sizes = tensor_sizes(view, inputs.images[0], calib.tp)
    scenes = sorted({i.scene for i in inputs.images})
    gates = {s: gate_record(gate_for(s, scorer.ep)) for s in scenes}
    scoring = _Scoring(
        every, scorer.backend or EmbeddedBackend(scorer.options().mode, scorer.ep.simulation), gates
    )
    upstream = upstream_of(view.model.graph, gated_outputs(view, scorer, scenes))

    def encodings(tensors: Collection[str]) -> Encodings:
        return raise16(view, calib.qp, inputs.union, ranges, tensors)

    searches: dict[str, tuple[Evaluate, list[str]]] = {
        s: (
            scoring.for_scene(s, encodings),
            [r.layer for r in worst_rows(inputs.layer_rows.get(s, []))],
        )
        for s in scenes
    }
    searches[ALL_SCENES] = (scoring.joint(encodings), joint_seeds(inputs.layer_rows))
    records, remedies = {}, {}
    for key, (fn, seeds) in track(list(searches.items()), "remedies: 16-bit search"):
        kept = [t for t in seeds if t in upstream]
        record = run_search(Search(fn, sizes, rp.search_budget), kept, rp.search_measured)
        record = record.model_copy(
            update={
                "not_upstream": [t for t in seeds if t not in upstream],
                "anchors": estimates(record),
            }
        )
        records[key] = record
        if record.chosen:
            name = "search16_all_scenes" if key == ALL_SCENES else "search16"
            remedies[key] = _remedy(name, record, encodings(record.chosen), sizes)
    return Searched(records, records.pop(ALL_SCENES), remedies)
