"""Gates: each scene's accuracy bar (``evaluate.gates`` over ``default_gate``, never laxer than
``gate_floor``) and the failures of a scene's metrics against it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.analysis.artifacts import GateRecord, SceneMetrics
from pipeline.params import EvaluateParams, Gate


def gate_for(scene: str, p: EvaluateParams) -> Gate:
    """The scene's gate (its own keys over the default), never laxer than the floor."""
    g = p.gates.get(scene, Gate())
    d, floor = p.default_gate, p.gate_floor

    def pick(key: str, stricter: Callable[[float, float], float]) -> float | None:
        own: float | None = getattr(g, key) if getattr(g, key) is not None else getattr(d, key)
        bound: float | None = getattr(floor, key)
        if own is None or bound is None:
            return own if own is not None else bound
        return stricter(own, bound)

    return Gate(
        cosine_min=pick("cosine_min", max),
        sqnr_min_db=pick("sqnr_min_db", max),
        miss_rate_max=pick("miss_rate_max", min),
    )


def gate_record(gate: Gate, passed: bool | None = None) -> GateRecord:
    """The bounds ``gate`` sets (and, in metrics.json, whether the scene passed)."""
    return GateRecord(
        cosine_min=gate.cosine_min,
        sqnr_min_db=gate.sqnr_min_db,
        miss_rate_max=gate.miss_rate_max,
        passed=passed,
    )


@dataclass(frozen=True)
class GateFailure:
    scene: str
    metric: str
    value: float
    threshold: float
    worst_layer: str

    def line(self) -> str:
        return (
            f"scene {self.scene!r}: {self.metric} {self.value:.6g} fails its gate "
            f"{self.threshold!r}; worst layer {self.worst_layer}"
        )


class Headline(Protocol):
    """What a gate reads: a scene's headline output metrics."""

    @property
    def output_sqnr_db(self) -> float: ...
    @property
    def output_cosine(self) -> float: ...
    @property
    def face_miss_rate(self) -> float | None: ...


@dataclass(frozen=True)
class GateCheck:
    label: str
    value: Callable[[Headline], float | None]
    bound: Callable[[GateRecord], float | None]
    at_least: bool  # the value must be at least the bound (else at most)


GATE_CHECKS = (
    GateCheck("output cosine", lambda m: m.output_cosine, lambda g: g.cosine_min, True),
    GateCheck("output SQNR dB", lambda m: m.output_sqnr_db, lambda g: g.sqnr_min_db, True),
    GateCheck("face miss rate", lambda m: m.face_miss_rate, lambda g: g.miss_rate_max, False),
)


def meets(m: Headline, gate: GateRecord) -> bool:
    """Whether headline metrics ``m`` meet every bound ``gate`` sets."""
    for check in GATE_CHECKS:
        value, bound = check.value(m), check.bound(gate)
        below = value is not None and bound is not None and value < bound
        above = value is not None and bound is not None and value > bound
        if below if check.at_least else above:
            return False
    return True


def failures_against(scene: str, m: SceneMetrics, gate: GateRecord) -> list[GateFailure]:
    """A scene's failures of ``gate`` (the scene's own gate, or one before it is recorded)."""
    out = []
    for check in GATE_CHECKS:
        value, bound = check.value(m), check.bound(gate)
        if bound is None or value is None:
            continue
        if (value < bound) if check.at_least else (value > bound):
            out.append(GateFailure(scene, check.label, value, bound, m.worst_layer))
    return out


def gate_failures(scene: str, m: SceneMetrics | Mapping[str, Any]) -> list[GateFailure]:
    """A scene's failures from its metrics block (used by the stage and by ``fieldcal gate``).
    A mapping is read as :class:`SceneMetrics` (``fieldcal gate`` reads metrics.json)."""
    sm = m if isinstance(m, SceneMetrics) else SceneMetrics.model_validate(m)
    return failures_against(scene, sm, sm.gate)
