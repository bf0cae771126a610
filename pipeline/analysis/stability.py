"""How many calibration images are enough: encodings and metrics from seeded subsamples.

For each scene (and for all calibration images together, ``all``), subsets of the sizes in
``stability.sizes`` smaller than the set, plus the whole set, are drawn with a seeded generator
(``stability.repeats`` draws each). Each draw gives min/max encodings from the per-image
statistics calibration already holds (cached: no model run), compared with the whole set's by
the relative change of every activation's scale; a size's point is the 95th percentile over
tensors, averaged over draws. ``enough`` is the smallest size from which every larger size stays
under ``stability.tolerance``.

Metrics: the first draw of each size is also evaluated (the quantized model, weights and every
activation, against the float model) on the scene's evaluation images, giving the headline
output SQNR and cosine per size, so a team sees whether the encodings' movement matters.

The curves use min/max encodings (the configured ``tf`` or ``symmetric`` mode); for ``enhanced``
and ``percentile``, whose histogram supports are fixed by the first image of the whole set, they
use ``tf``, and the result says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.analysis.evaluate import EvalImage, oneshot_metrics
from pipeline.calibration.calibrate import Statistics, compute_encodings
from pipeline.graph.view import ModelView
from pipeline.params import EvaluateParams, QuantizeParams, StabilityParams, TensorsParams
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.observers import MinMax

Evaluate = Callable[[Encodings], tuple[float, float]]  # encodings -> (output SQNR dB, cosine)


@dataclass(frozen=True)
class Curve:
    group: str
    images: int
    sizes: list[int]
    p95_scale_change: list[float]
    output_sqnr_db: list[float | None]
    output_cosine: list[float | None]
    enough: int | None

    def to_json(self, tolerance: float, mode: str) -> dict[str, Any]:
        return {
            "images": self.images,
            "tolerance": tolerance,
            "mode": mode,
            "enough": self.enough,
            "curve": [
                {
                    "images": n,
                    "p95_scale_change": c,
                    "output_sqnr_db": s,
                    "output_cosine": k,
                }
                for n, c, s, k in zip(
                    self.sizes,
                    self.p95_scale_change,
                    self.output_sqnr_db,
                    self.output_cosine,
                    strict=True,
                )
            ],
        }


def curve_mode(qp: QuantizeParams) -> QuantizeParams:
    """The quantize params the curves use: the configured min/max mode, else ``tf``."""
    if qp.activations.mode in ("tf", "symmetric"):
        return qp
    return qp.with_activation_mode("tf")


def subset_minmax(names: Sequence[str], per_image: NDArray[np.float64], pick: Any) -> MinMax:
    """Merged min/max of the images ``pick`` from (images, 2, tensors) per-image statistics."""
    return MinMax.of_images(names, per_image[pick])


def _scales(enc: Encodings, names: Sequence[str]) -> NDArray[np.float64]:
    return np.array([enc.activations[t].scale for t in names], np.float64)


def curves(
    view: ModelView,
    per_image: NDArray[np.float64],
    groups: Mapping[str, Sequence[int]],
    qp: QuantizeParams,
    sp: StabilityParams,
    seed: int,
    encode: Callable[[MinMax], Encodings],
    evaluators: Mapping[str, Evaluate],
) -> list[Curve]:
    """One :class:`Curve` per group; ``evaluators[group]`` scores a draw's encodings (groups
    without evaluation images get no metric points)."""
    names = view.kept_tensors
    rng = np.random.default_rng(seed)
    out = []
    for group, members in sorted(groups.items()):
        idx = np.asarray(members, dtype=np.int64)
        if idx.size == 0:
            continue
        full = encode(subset_minmax(names, per_image, idx))
        full_scales = _scales(full, names)
        sizes = [s for s in sp.sizes if s < idx.size] + [int(idx.size)]
        changes: list[float] = []
        sqnrs: list[float | None] = []
        cosines: list[float | None] = []
        for size in sizes:
            draws = sp.repeats if size < idx.size else 1
            moved = []
            first: Encodings | None = None
            for _ in range(draws):
                pick = np.sort(rng.choice(idx, size=size, replace=False))
                enc = full if size == idx.size else encode(subset_minmax(names, per_image, pick))
                first = first or enc
                rel = np.abs(_scales(enc, names) - full_scales) / full_scales
                moved.append(float(np.percentile(rel, 95)))
            changes.append(float(np.mean(moved)))
            score = evaluators.get(group)
            if score is not None and first is not None:
                s, c = score(first)
                sqnrs.append(s)
                cosines.append(c)
            else:
                sqnrs.append(None)
                cosines.append(None)
        enough = next(
            (n for i, n in enumerate(sizes) if all(c <= sp.tolerance for c in changes[i:])), None
        )
        out.append(Curve(group, int(idx.size), sizes, changes, sqnrs, cosines, enough))
    return out


def groups_by_scene(scenes: Sequence[str]) -> dict[str, list[int]]:
    """Image indices for ``all`` and for each scene."""
    groups: dict[str, list[int]] = {"all": list(range(len(scenes)))}
    for i, scene in enumerate(scenes):
        groups.setdefault(scene, []).append(i)
    return groups


def for_calibration(
    view: ModelView,
    stats: Statistics,
    cal_scenes: Sequence[str],
    images: Sequence[EvalImage],
    tp: TensorsParams,
    qp: QuantizeParams,
    ep: EvaluateParams,
    sp: StabilityParams,
    seed: int,
) -> list[Curve]:
    """Curves for a calibration set (``stats`` per image, scenes in the same order), scored on
    the evaluation ``images``: per scene on that scene's images, ``all`` on the worst scene."""
    cq = curve_mode(qp)

    def encode(mm: MinMax) -> Encodings:
        return compute_encodings(view, replace(stats, minmax=mm, pdfs=None), cq)

    def scorer(scenes: set[str]) -> Evaluate:
        mine = [i for i in images if i.scene in scenes]

        def score(enc: Encodings) -> tuple[float, float]:
            m = oneshot_metrics(view, enc, mine, tp, ep, "none", qp.round_mode)
            worst = min(m.values(), key=lambda s: s["output_sqnr_db"])
            return worst["output_sqnr_db"], worst["output_cosine"]

        return score

    groups = groups_by_scene(cal_scenes)
    evaluated = {i.scene for i in images}
    evaluators = {
        g: scorer(evaluated if g == "all" else {g})
        for g in groups
        if (g == "all" and evaluated) or g in evaluated
    }
    return curves(view, stats.per_image, groups, qp, sp, seed, encode, evaluators)


def to_csv(found: Sequence[Curve]) -> str:
    """One row per (group, subset size): the DVC plot of the scale-change curves."""
    lines = ["group,images,p95_scale_change,output_sqnr_db"]
    for c in found:
        for n, ch, s in zip(c.sizes, c.p95_scale_change, c.output_sqnr_db, strict=True):
            lines.append(f"{c.group},{n},{ch!r},{'' if s is None else repr(s)}")
    return "\n".join(lines) + "\n"
