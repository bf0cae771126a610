"""What the analysis stages hand each other, typed: written and read through these models only.

Each model is frozen and forbids unknown keys, so a file written by another version fails at
read time with the key's path. ``to_json`` gives the document ``pipeline.atomic.write_json``
writes (sorted keys): a field listed in a model's ``OMITTED_WHEN_NONE`` is left out when it
has no value (the layer rows of a run without attribution have no ``dominant``); any other
``None`` is written as ``null``.

| file | model |
|---|---|
| ``out/evaluate/metrics.json`` | :class:`MetricsDocument` (per scene :class:`SceneMetrics`) |
| ``out/evaluate/layers.json`` | ``{scene: [LayerRow]}`` (:func:`read_layers`) |
| ``out/coverage/coverage.json`` | ``{session: {scene: CoverageVerdict}}`` |
| ``out/remedies/remedies.json`` | ``{scene: RemedyVerdict}`` (:mod:`.remedy_artifacts`) |
| ``out/remedies/recheck.json`` | :class:`RemedyRecheck` |
| ``out/stability/stability.json`` | ``{group: StabilityRecord}`` |

The worst-layer rule (which layer to blame) is :func:`worst_first`, used by every reader.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    model_serializer,
)

from pipeline.atomic import write_json


class Artifact(BaseModel):
    """Base of every stage hand-off: frozen, unknown keys rejected, optional keys omitted."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        d: dict[str, Any] = handler(self)
        return {k: v for k, v in d.items() if not (v is None and k in self.OMITTED_WHEN_NONE)}

    def to_json(self) -> dict[str, Any]:
        return self.model_dump()


# ---------------------------------------------------------------- the worst-layer rule


def blame_sqnr(own_db: float | None, accumulated_db: float) -> float:
    """The SQNR a layer is blamed by: its own (layerwise: fed float inputs) error when measured,
    else the accumulated (oneshot) error at its output."""
    return accumulated_db if own_db is None else own_db


def worst_first(layers: Iterable[tuple[str, float | None, float]]) -> list[str]:
    """Layer names, worst first, from ``(name, own SQNR dB or None, accumulated SQNR dB)``:
    :func:`blame_sqnr` ascending, ties by name."""
    return [t for _, t in sorted((blame_sqnr(own, acc), t) for t, own, acc in layers)]


# ---------------------------------------------------------------- evaluate: layers.json


class LayerSummary(Artifact):
    """One tensor's metrics over a scene's images (:class:`pipeline.analysis.metrics.LayerAcc`)."""

    sqnr_db: float  # with the configured signal (evaluate.sqnr_signal)
    sqnr_golden_db: float
    sqnr_inference_db: float
    mean_image_sqnr_db: float | None
    cosine: float
    mse: float
    max_abs_error: float
    clip_rate: float
    worst_image: str
    worst_image_sqnr_db: float | None


class LayerRow(LayerSummary):
    """One row of ``layers.json`` and of ``layers/<scene>.csv``."""

    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset(
        {
            "sqnr_weights_only_db",
            "sqnr_activations_only_db",
            "dominant",
            "sqnr_layerwise_db",
            "tail_ratio",
        }
    )
    layer_index: int
    layer: str
    op_type: str
    sqnr_weights_only_db: float | None = None
    sqnr_activations_only_db: float | None = None
    dominant: Literal["weights", "activations"] | None = None
    sqnr_layerwise_db: float | None = None  # its own error (fed float inputs)
    tail_ratio: float | None = None

    @property
    def is_input(self) -> bool:
        return self.op_type == "Input"

    @property
    def blame_sqnr_db(self) -> float:
        return blame_sqnr(self.sqnr_layerwise_db, self.sqnr_db)


def worst_rows(rows: Sequence[LayerRow], n: int | None = None) -> list[LayerRow]:
    """A scene's layers (the input excluded) worst first by :func:`worst_first`."""
    by_name = {r.layer: r for r in rows if not r.is_input}
    order = worst_first((r.layer, r.sqnr_layerwise_db, r.sqnr_db) for r in by_name.values())
    return [by_name[t] for t in order[:n]]


# ---------------------------------------------------------------- evaluate: metrics.json


class OutputMetric(Artifact):
    sqnr_db: float
    cosine: float


class FaceSummary(Artifact):
    """Float vs quantized detections of a scene (:class:`pipeline.analysis.detect.Agreement`)."""

    float_faces: int
    quantized_faces: int
    missed: int
    miss_rate: float
    spurious: int
    mean_iou: float | None
    images_with_miss: list[str]


class SweepPoint(Artifact):
    """Output SQNR with only this layer quantized, and with everything but it."""

    enabled_only: float
    disabled: float


class GateRecord(Artifact):
    """A scene's gate (only the bounds it sets) and, in metrics.json, whether it passed."""

    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset(
        {"cosine_min", "sqnr_min_db", "miss_rate_max", "passed"}
    )
    cosine_min: float | None = None
    sqnr_min_db: float | None = None
    miss_rate_max: float | None = None
    passed: bool | None = None


class SceneMetrics(Artifact):
    """One scene's block of ``metrics.json`` (``dvc metrics`` reads it hierarchically)."""

    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset(
        {"worst_layer_own_sqnr_db", "faces", "sensitivity"}
    )
    images: int
    output_sqnr_db: float
    output_cosine: float
    outputs: dict[str, OutputMetric]
    worst_layer: str
    worst_layer_sqnr_db: float
    worst_layer_clip_rate: float
    worst_layer_dominant: str
    worst_layer_own_sqnr_db: float | None = None
    faces: FaceSummary | None = None
    sensitivity: dict[str, SweepPoint] | None = None
    gate: GateRecord

    @property
    def face_miss_rate(self) -> float | None:
        return self.faces.miss_rate if self.faces is not None else None

    @property
    def worst_layer_blame_sqnr_db(self) -> float:
        return blame_sqnr(self.worst_layer_own_sqnr_db, self.worst_layer_sqnr_db)


class RunInfo(Artifact):
    model: str
    model_sha256: str
    backend: str
    activations: str
    weights: str
    bias_bitwidth: int
    sqnr_signal: str
    simulation: str  # the embedded simulation's arithmetic (evaluate.simulation): htp, reference


# ---------------------------------------------------------------- metrics.json: backends
# The same encodings on a real backend beside the embedded simulation
# (pipeline/analysis/backend_compare.py, W-F's).


class BackendVerdict(Artifact):
    """A scene's gate on one backend: headline cosine / SQNR (min over the headline outputs),
    face miss rate (None without a decoder), and whether the gate passes."""

    output_cosine: float
    output_sqnr_db: float
    miss_rate: float | None
    passed: bool


class BackendAgreement(Artifact):
    """The backend against the embedded simulation on one output: SQNR between the two, and the
    shares of elements 0, 1 and more than 1 quantization step apart."""

    sqnr_db: float
    steps_0: float
    steps_1: float
    steps_more: float


class BackendOutput(Artifact):
    float_vs_embedded: OutputMetric
    float_vs_backend: OutputMetric
    backend_vs_embedded: BackendAgreement


class BackendScene(Artifact):
    images: int
    embedded: BackendVerdict
    backend: BackendVerdict
    verdicts_agree: bool
    outputs: dict[str, BackendOutput]


class LayerAgreement(Artifact):
    """One kept tensor, the embedded simulation against the backend over every evaluation image:
    the share of elements on the same quantization step, and the SQNR between the two."""

    layer: str
    op_type: str
    equal: float
    sqnr_db: float


class BackendComparison(Artifact):
    """``metrics.json``'s ``backends.<backend>``: backend, versions, the QDQ model's sha256 and
    the embedded simulation's requantization (``evaluate.simulation``), then per scene and per
    layer."""

    backend: str
    versions: dict[str, str]
    qdq_model_sha256: str
    simulation: str
    verdicts_agree: bool
    scenes: dict[str, BackendScene]
    layers: list[LayerAgreement]


class RemedyOnBackend(Artifact):
    """A scene's chosen remedy on the embedded simulation and on the backend; ``error``: why
    the backend could not run it (then no verdicts: e.g. a node the HTP does not take)."""

    remedy: str
    qdq_model: str
    qdq_model_sha256: str
    embedded: BackendVerdict | None
    backend: BackendVerdict | None
    verdicts_agree: bool | None
    backend_vs_embedded_sqnr_db: float | None  # the lowest over the model outputs
    error: str | None = None


class RemedyRecheck(Artifact):
    """``out/remedies/recheck.json`` (pipeline/analysis/htp_recheck.py): each scene's chosen
    remedy on ``backend`` (None when evaluation is embedded only)."""

    backend: str | None
    versions: dict[str, str]
    scenes: dict[str, RemedyOnBackend]


class MetricsDocument(Artifact):
    """``out/evaluate/metrics.json``: run facts, then one block per scene; with
    ``evaluate.backend: qnn-htp``, ``backends.<name>``: the same encodings on that backend."""

    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"backends"})
    run: RunInfo
    passed: bool
    scenes: dict[str, SceneMetrics]
    backends: dict[str, BackendComparison] | None = None


# ---------------------------------------------------------------- coverage.json


class CoverageTensor(Artifact):
    tensor: str
    clip_rate: float
    sqnr_db: float
    baseline_sqnr_db: float | None
    sqnr_drop_db: float
    range_use: float


class CoverageVerdict(Artifact):
    """One session and scene against the current encodings."""

    images: int
    requantize: Literal["yes", "no"]
    reason: str
    tensors: list[CoverageTensor]


# ---------------------------------------------------------------- stability.json


class CurvePoint(Artifact):
    images: int
    p95_scale_change: float
    output_sqnr_db: float | None
    output_cosine: float | None


class StabilityRecord(Artifact):
    images: int
    tolerance: float
    mode: str
    enough: int | None
    curve: list[CurvePoint]


def settled(curve: StabilityRecord) -> bool:
    """Whether a subset smaller than the whole set already moves scales less than the
    tolerance (the whole set against itself always does, so it proves nothing)."""
    return curve.enough is not None and curve.enough < curve.images


def unsettled_text(curve: StabilityRecord) -> str:
    points = [p for p in curve.curve if p.images < curve.images]
    if not points:
        return f"cannot tell yet: {curve.images} images, too few for a smaller subset to compare"
    last = points[-1]
    return (
        f"cannot tell yet: the curve has not settled by {last.images} images "
        f"(scales still move {100 * last.p95_scale_change:.0f} % at "
        f"{last.images} of {curve.images})"
    )


# ---------------------------------------------------------------- reading and writing

M = TypeVar("M")


def read_as(path: Path, adapter: TypeAdapter[M]) -> M:
    """A JSON file validated as ``adapter``'s type."""
    return adapter.validate_python(json.loads(path.read_text(encoding="utf-8")))


def _dump(value: Any) -> Any:
    """Models to their JSON documents, inside dicts and lists too."""
    if isinstance(value, Artifact):
        return value.to_json()
    if isinstance(value, Mapping):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    return value


def write(path: Path, value: Artifact | Mapping[str, Any] | Sequence[Any]) -> None:
    """Write an artifact (or a dict/list of them) as canonical JSON."""
    write_json(path, _dump(value))


_LAYERS = TypeAdapter(dict[str, list[LayerRow]])
_COVERAGE = TypeAdapter(dict[str, dict[str, CoverageVerdict]])
_STABILITY = TypeAdapter(dict[str, StabilityRecord])
_METRICS = TypeAdapter(MetricsDocument)


def read_metrics(path: Path) -> MetricsDocument:
    return read_as(path, _METRICS)


def read_layers(path: Path) -> dict[str, list[LayerRow]]:
    return read_as(path, _LAYERS)


def read_coverage(path: Path) -> dict[str, dict[str, CoverageVerdict]]:
    return read_as(path, _COVERAGE)


def read_stability(path: Path) -> dict[str, StabilityRecord]:
    return read_as(path, _STABILITY)
