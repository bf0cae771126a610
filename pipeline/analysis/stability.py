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

from pipeline.analysis.artifacts import CurvePoint, StabilityRecord
from pipeline.analysis.evaluate import OneshotScorer
from pipeline.analysis.runs import EvalImage
from pipeline.calibration.encodings import compute_encodings
from pipeline.calibration.statistics import Statistics
from pipeline.params import QuantizeParams, StabilityParams
from pipeline.progress import track
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

    def record(self, tolerance: float, mode: str) -> StabilityRecord:
        """The group's entry of ``stability.json``."""
        return StabilityRecord(
            images=self.images,
            tolerance=tolerance,
            mode=mode,
            enough=self.enough,
            curve=[
                CurvePoint(images=n, p95_scale_change=c, output_sqnr_db=s, output_cosine=k)
                for n, c, s, k in zip(
                    self.sizes,
                    self.p95_scale_change,
                    self.output_sqnr_db,
                    self.output_cosine,
                    strict=True,
                )
            ],
        )


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


@dataclass(frozen=True)
class Draws:
    """What the curves draw from: per-image statistics of the kept tensors ``names``
    ((images, 2, tensors) min and max), the groups' image indices, and the encoder."""

    names: Sequence[str]
    per_image: NDArray[np.float64]
    groups: Mapping[str, Sequence[int]]
    encode: Callable[[MinMax], Encodings]

    def encodings(self, pick: Any) -> Encodings:
        return self.encode(subset_minmax(self.names, self.per_image, pick))


def _size_point(
    draws: Draws,
    idx: NDArray[np.int64],
    full: Encodings,
    size: int,
    repeats: int,
    rng: np.random.Generator,
) -> tuple[float, Encodings]:
    """(mean over draws of the 95th-percentile relative scale change, the first draw)."""
    full_scales = _scales(full, draws.names)
    moved = []
    first: Encodings | None = None
    for _ in range(repeats if size < idx.size else 1):
        pick = np.sort(rng.choice(idx, size=size, replace=False))
        enc = full if size == idx.size else draws.encodings(pick)
        first = first or enc
        rel = np.abs(_scales(enc, draws.names) - full_scales) / full_scales
        moved.append(float(np.percentile(rel, 95)))
    assert first is not None
    return float(np.mean(moved)), first


def curves(
    draws: Draws, sp: StabilityParams, seed: int, evaluators: Mapping[str, Evaluate]
) -> list[Curve]:
    """One :class:`Curve` per group; ``evaluators[group]`` scores a draw's encodings (groups
    without evaluation images get no metric points)."""
    rng = np.random.default_rng(seed)
    out = []
    for group, members in track(sorted(draws.groups.items()), "stability: groups"):
        idx = np.asarray(members, dtype=np.int64)
        if idx.size == 0:
            continue
        full = draws.encodings(idx)
        sizes = [s for s in sp.sizes if s < idx.size] + [int(idx.size)]
        changes: list[float] = []
        sqnrs: list[float | None] = []
        cosines: list[float | None] = []
        score = evaluators.get(group)
        for size in sizes:
            change, first = _size_point(draws, idx, full, size, sp.repeats, rng)
            changes.append(change)
            s, c = score(first) if score is not None else (None, None)
            sqnrs.append(s)
            cosines.append(c)
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


@dataclass(frozen=True)
class CalibrationSet:
    """A calibration set's per-image statistics and each image's scene, in the same order."""

    stats: Statistics
    scenes: Sequence[str]


def for_calibration(
    scorer: OneshotScorer,
    calibration: CalibrationSet,
    images: Sequence[EvalImage],
    qp: QuantizeParams,
    sp: StabilityParams,
    seed: int,
) -> list[Curve]:
    """Curves for a calibration set, scored on the evaluation ``images``: per scene on that
    scene's images, ``all`` on the worst scene."""
    cq = curve_mode(qp)
    view, stats = scorer.view, calibration.stats

    def encode(mm: MinMax) -> Encodings:
        return compute_encodings(view, replace(stats, minmax=mm, pdfs=None), cq)

    def scorer_of(scenes: set[str]) -> Evaluate:
        mine = [i for i in images if i.scene in scenes]

        def score(enc: Encodings) -> tuple[float, float]:
            worst = min(scorer.scenes(enc, mine).values(), key=lambda s: s.output_sqnr_db)
            return worst.output_sqnr_db, worst.output_cosine

        return score

    groups = groups_by_scene(calibration.scenes)
    evaluated = {i.scene for i in images}
    evaluators = {
        g: scorer_of(evaluated if g == "all" else {g})
        for g in groups
        if (g == "all" and evaluated) or g in evaluated
    }
    draws = Draws(view.kept_tensors, stats.per_image, groups, encode)
    return curves(draws, sp, seed, evaluators)


def to_csv(found: Sequence[Curve]) -> str:
    """One row per (group, subset size): the DVC plot of the scale-change curves."""
    lines = ["group,images,p95_scale_change,output_sqnr_db"]
    for c in found:
        for n, ch, s in zip(c.sizes, c.p95_scale_change, c.output_sqnr_db, strict=True):
            lines.append(f"{c.group},{n},{ch!r},{'' if s is None else repr(s)}")
    return "\n".join(lines) + "\n"
