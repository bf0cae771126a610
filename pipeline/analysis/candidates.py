"""What the remedies are made of: the calibration images, a remedy (a name, its encodings and
what it costs a deployment) and what every scene's remedies read; encodings from the cached
calibration statistics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.analysis.artifacts import CoverageVerdict, LayerRow, StabilityRecord
from pipeline.analysis.runs import EvalImage
from pipeline.calibration.collect import Calibrator
from pipeline.params import QuantizeParams, RemediesParams
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.observers import MinMax


@dataclass(frozen=True)
class CalImage:
    """One calibration tensor (.raw) and where its image came from."""

    raw: Path
    scene: str
    source: str


@dataclass(frozen=True)
class Remedy:
    """One remedy: its name in remedies.json, its encodings and its cost in words."""

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


@dataclass(frozen=True)
class FieldEvidence:
    """What the field data says: each session's coverage verdicts ({session: {scene: ...}}),
    the stability curves ({group: ...}) and coverage's clip-rate limit."""

    coverage: Mapping[str, Mapping[str, CoverageVerdict]]
    stability: Mapping[str, StabilityRecord]
    clip_rate_max: float


@dataclass(frozen=True)
class Inputs:
    """What the remedies of every scene read: the calibration and evaluation sets, the union
    encodings, the evaluate stage's layer rows and the remedies params."""

    cal: Sequence[CalImage]
    images: Sequence[EvalImage]
    union: Encodings
    layer_rows: Mapping[str, Sequence[LayerRow]]
    rp: RemediesParams

    field: FieldEvidence | None = None  # for the "more captures of this scene" proposal
