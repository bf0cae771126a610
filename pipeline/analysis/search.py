"""The smallest set of activations at 16 bits that passes a gate: measured sensitivity, bisection
over the ranked prefix, greedy pruning, within a budget of evaluations.

One *evaluation* scores one set of 16-bit tensors: the quantized model (through the backend
seam) on the images in question, against float references computed once per image
(:class:`OutputScorer`). The steps:

1. the empty set (the 8-bit model) and the full candidate set: if the full set fails, no
   16-bit set passes and the search stops;
2. sensitivity: each of the first ``measured`` candidates of the seed ranking (layerwise own
   error, worst first) alone at 16 bits; its gain in output SQNR over the 8-bit model;
3. ranking: measured candidates by gain (largest first), then the rest in seed order;
4. bisection over the ranked prefix for the shortest passing prefix (it assumes more tensors do
   not hurt, which on a few images is not always so: README, "Why more 16-bit tensors can score
   lower"; step 5 and the final re-evaluation make up for it);
5. greedy pruning: try each tensor of the set out, unmeasured and least gain first, dropping it
   while the rest still passes; per tensor the record says whether its removal was tried (the
   budget may end first) and what it gave.

Candidates are only tensors upstream of the outputs the gate reads (a tensor with no path to
them cannot change the score). The number measured alone is capped (:func:`measurable`) so that
the budget covers bisection and pruning of the scene's set first.

Every evaluated set is kept; the Pareto front (fewest extra bytes for the best output SQNR) is
reported with the evaluations spent.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pipeline.analysis.detect import DECODERS, Agreement, Boxes
from pipeline.analysis.metrics import Comparison, LayerAcc, Reference
from pipeline.analysis.remedy_artifacts import Removal, SearchPoint, SearchRecord
from pipeline.analysis.runs import EvalImage
from pipeline.backends.base import Backend
from pipeline.data.tensors import read_raw
from pipeline.graph.rewrite import with_outputs
from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView
from pipeline.params import TensorsParams
from pipeline.quantization.encodings import Encodings


@dataclass(frozen=True)
class Score:
    """Headline output metrics of one scene under one set of encodings."""

    output_sqnr_db: float
    output_cosine: float
    face_miss_rate: float | None


class OutputScorer:
    """Scores encodings on images by the model outputs only, float references computed once.

    ``headline``: the outputs behind the headline metrics; the decoder's outputs are run too."""

    def __init__(
        self,
        view: ModelView,
        images: Sequence[EvalImage],
        tp: TensorsParams,
        headline: Sequence[str],
        detection: tuple[str, float],  # (decoder name, threshold)
    ) -> None:
        self.view, self.images, self.tp, self.headline = view, list(images), tp, list(headline)
        self.decoder = DECODERS.get(detection[0])
        self.threshold = detection[1]
        needed = list(self.decoder[1]) if self.decoder else []
        self.outputs = list(dict.fromkeys(self.headline + needed))
        runner = Runner(with_outputs(view.model, self.outputs))
        self.inputs = [read_raw(i.raw, tp, view.input_layout) for i in self.images]
        self.refs: list[dict[str, Reference]] = []
        self.float_boxes: list[Boxes] = []
        for x in self.inputs:
            out = runner.run(x, self.outputs)
            self.refs.append({o: Reference.of(out[o], 0.0, 0.0) for o in self.headline})
            if self.decoder:
                fn, names = self.decoder
                self.float_boxes.append(fn({k: out[k][0] for k in names}, self.threshold))
        self.evaluations = 0

    def only(self, scene: str) -> OutputScorer:
        """This scorer on one scene's images, sharing the float references."""
        other = copy.copy(self)
        keep = [k for k, i in enumerate(self.images) if i.scene == scene]
        other.images = [self.images[k] for k in keep]
        other.inputs = [self.inputs[k] for k in keep]
        other.refs = [self.refs[k] for k in keep]
        other.float_boxes = [self.float_boxes[k] for k in keep] if self.float_boxes else []
        return other

    def score(self, backend: Backend, enc: Encodings) -> dict[str, Score]:
        """Per scene of the images: headline output SQNR, cosine and face miss rate."""
        self.evaluations += 1
        model = backend.prepare(self.view, enc, self.outputs)
        accs: dict[str, dict[str, LayerAcc]] = {}
        faces: dict[str, Agreement] = {}
        for i, img in enumerate(self.images):
            out = model.run(self.inputs[i])
            mine = accs.setdefault(img.scene, {o: LayerAcc() for o in self.headline})
            for o in self.headline:
                ref = self.refs[i][o]
                mine[o].add(ref, Comparison.of(ref, out[o]), img.path)
            if self.decoder:
                fn, names = self.decoder
                got = fn({k: out[k][0] for k in names}, self.threshold)
                faces.setdefault(img.scene, Agreement()).add(self.float_boxes[i], got, img.path)
        return {
            s: Score(
                min(a.sqnr() for a in by_out.values()),
                min(a.summary("golden").cosine for a in by_out.values()),
                faces[s].summary().miss_rate if s in faces else None,
            )
            for s, by_out in accs.items()
        }


@dataclass
class Search:
    """One search: ``evaluate(tensors)`` -> (score, passes) for a set of 16-bit tensors."""

    evaluate: Callable[[frozenset[str]], tuple[Score, bool]]
    sizes: Mapping[str, int]  # elements per tensor (batch 1)
    budget: int
    points: dict[frozenset[str], tuple[Score, bool]] = field(default_factory=dict)

    def __call__(self, tensors: frozenset[str]) -> tuple[Score, bool] | None:
        """The set's score (cached), or None once the budget is spent."""
        if tensors not in self.points:
            if len(self.points) >= self.budget:
                return None
            self.points[tensors] = self.evaluate(tensors)
        return self.points[tensors]

    def passes(self, tensors: frozenset[str]) -> bool | None:
        found = self(tensors)
        return None if found is None else found[1]

    def point(self, tensors: frozenset[str], order: Sequence[str]) -> SearchPoint:
        score, ok = self.points[tensors]
        return SearchPoint(
            tensors=[t for t in order if t in tensors],
            extra_bytes=sum(self.sizes[t] for t in tensors),
            output_sqnr_db=score.output_sqnr_db,
            output_cosine=score.output_cosine,
            face_miss_rate=score.face_miss_rate,
            passes_gate=ok,
        )

    def pareto(self, order: Sequence[str]) -> list[SearchPoint]:
        pts = sorted(
            (self.point(s, order) for s in self.points),
            key=lambda p: (p.extra_bytes, -p.output_sqnr_db),
        )
        front: list[SearchPoint] = []
        for p in pts:
            if not front or p.output_sqnr_db > front[-1].output_sqnr_db:
                front.append(p)
        return front


def measurable(budget: int, candidates: int, measured: int) -> int:
    """How many tensors to measure alone so that bisection and pruning still fit the budget:
    2 (the empty and the full set) + m singles + ceil(log2 n) bisection steps, and as many
    evaluations again as the singles for pruning the set (the budget goes to the scene's set
    before more measurements)."""
    bisection = max(1, math.ceil(math.log2(max(candidates, 2))))
    return max(0, min(measured, candidates, (budget - 2 - bisection) // 2))


def _ranked(search: Search, seeds: Sequence[str], measured: int) -> dict[str, float]:
    """Gain in output SQNR of each of the first ``measured`` seeds alone at 16 bits."""
    base = search(frozenset())
    gains: dict[str, float] = {}
    for t in seeds[:measured]:
        alone = search(frozenset([t]))
        if base is None or alone is None:
            break
        gains[t] = alone[0].output_sqnr_db - base[0].output_sqnr_db
    return gains


def _bisect(search: Search, ranked: Sequence[str]) -> int | None:
    """Length of the shortest passing prefix by bisection (the full set passes)."""
    lo, hi = 0, len(ranked)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ok = search.passes(frozenset(ranked[:mid]))
        if ok is None:
            return hi
        lo, hi = (lo, mid) if ok else (mid, hi)
    return hi


def prune_order(chosen: Sequence[str], gains: Mapping[str, float]) -> list[str]:
    """Unmeasured tensors first (nothing says they help), then by measured gain, smallest
    first: the likeliest to be dropped are tried first."""
    unmeasured = [t for t in chosen if t not in gains]
    return unmeasured + sorted((t for t in chosen if t in gains), key=lambda t: (gains[t], t))


def _prune(
    search: Search, chosen: list[str], gains: Mapping[str, float]
) -> tuple[list[str], list[Removal]]:
    """Try each tensor out of the set (:func:`prune_order`), dropping it when the rest still
    passes, until the budget is spent (the record then says which were not tried)."""
    removals: list[Removal] = []
    for t in prune_order(chosen, gains):
        gain = gains.get(t)
        rest = frozenset(chosen) - {t}
        found = search(rest)
        if found is None:
            why = "the evaluation budget was spent before its removal was tried"
            removals.append(
                Removal(
                    tensor=t,
                    gain_db=gain,
                    tried=False,
                    set_size=None,
                    output_sqnr_db_without=None,
                    passes_without=None,
                    outcome="not tried",
                    why=why,
                )
            )
            continue
        score, ok = found
        removals.append(
            Removal(
                tensor=t,
                gain_db=gain,
                tried=True,
                set_size=len(chosen),
                output_sqnr_db_without=score.output_sqnr_db,
                passes_without=ok,
                outcome="removed" if ok else "stays",
                why=(
                    f"the other {len(rest)} pass without it"
                    if ok
                    else f"without it the set scores {score.output_sqnr_db:.2f} dB and fails "
                    "the gate"
                ),
            )
        )
        if ok:
            chosen = [c for c in chosen if c != t]
    return chosen, removals


def run_search(search: Search, seeds: Sequence[str], measured: int) -> SearchRecord:
    """Steps 1 to 5 (module docstring) for one scene or for every scene at once; ``seeds``
    holds only tensors upstream of the gated outputs."""
    full = frozenset(seeds)
    ok_base, ok_full = search.passes(frozenset()), search.passes(full)
    gains: dict[str, float] = {}
    chosen: list[str] | None = None
    removals: list[Removal] = []
    if ok_base:
        chosen, why = [], "the 8-bit model already passes"
    elif not ok_full:
        why = f"even all {len(seeds)} activations at 16 bits fail the gate"
    else:
        gains = _ranked(search, seeds, measurable(search.budget, len(seeds), measured))
        measured_first = sorted(gains, key=lambda t: (-gains[t], seeds.index(t)))
        ranked = measured_first + [t for t in seeds if t not in gains]
        k = _bisect(search, ranked)
        found = list(ranked[:k]) if k is not None else list(ranked)
        chosen, removals = _prune(search, found, gains)
        why = (
            f"{len(chosen)} activations at 16 bits pass: bisection over the ranked prefix "
            f"found {len(found)}, pruning kept {len(chosen)}"
        )
    return SearchRecord(
        budget=search.budget,
        evaluations=len(search.points),
        candidates=len(seeds),
        not_upstream=[],
        seed_ranking=list(seeds),
        measured_gain_db=gains,
        chosen=chosen,
        why=why,
        removals=removals,
        anchors=[],
        pareto=search.pareto(seeds),
    )
