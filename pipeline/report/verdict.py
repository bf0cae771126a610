"""What to ship and what to do next, decided from the remedies table.

A car ships one model with one encodings file, while the remedies stage chooses per scene. The
configurations that are one encodings set for every scene are ``SHARED``; the verdict ships the
cheapest of them (in the remedies stage's cost order) that passes every scene's gate. The
per-scene remedies (``per_scene``, ``mixed16_K``, whose 16-bit tensors differ by scene) become
next steps for the scenes that fail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.analysis.artifacts import GateRecord, StabilityRecord, settled, unsettled_text
from pipeline.analysis.remedy_artifacts import SHARED, RemedyRow, RemedyVerdict
from pipeline.layout import Layout

Remedies = Mapping[str, RemedyVerdict]


@dataclass(frozen=True)
class Ship:
    """The configuration to ship: ``remedy`` None when none passes every scene (then
    ``best`` is the shared configuration passing most scenes)."""

    remedy: str | None
    best: str | None
    cost: str
    encodings: Path | None
    passing: tuple[str, ...]
    failing: tuple[str, ...]
    qdq_model: Path | None = None  # the shipped encodings as a QDQ model (remedies stage)
    # target name -> its QNN context binaries compiled from qdq_model (compile stage)
    binaries: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    scene: str
    action: str
    evidence: str


def _row(remedies: Remedies, scene: str, name: str) -> RemedyRow | None:
    return next((r for r in remedies[scene].remedies if r.remedy == name), None)


def encodings_of(name: str, remedies: Remedies, lay: Layout) -> Path | None:
    """Where ``name``'s encodings are on disk: the quantize stage's for ``union``, else a
    scene's chosen encodings written by the remedies stage (None if no scene chose it)."""
    if name == "union":
        return lay.quantize.encodings
    scene = next((s for s, v in sorted(remedies.items()) if v.chosen == name), None)
    return lay.remedies.scene_encodings(scene) if scene is not None else None


def ship(remedies: Remedies, lay: Layout, compiled: Mapping[str, Any] | None = None) -> Ship:
    """The configuration to ship (module docstring); ``compiled``, the compile stage's
    manifest, adds the context binaries it compiled from the shipped QDQ model."""
    scenes = sorted(remedies)
    order = [r.remedy for r in remedies[scenes[0]].remedies if r.remedy in SHARED]
    tally: list[tuple[str, tuple[str, ...], str]] = []
    for name in order:
        rows = {s: _row(remedies, s, name) for s in scenes}
        passing = tuple(s for s in scenes if (r := rows[s]) is not None and r.passes_gate)
        cost = next((r.cost for r in rows.values() if r is not None), "")
        tally.append((name, passing, cost))
        if len(passing) == len(scenes):
            # the remedies stage writes this configuration's encodings as the car's file
            ship_qdq = lay.remedies.qdq_model("ship")
            bins = binaries_of(compiled, ship_qdq, lay)
            return Ship(name, name, cost, lay.remedies.ship, passing, (), ship_qdq, bins)
    if not tally:
        return Ship(None, None, "", None, (), tuple(scenes))
    best, passing, cost = max(tally, key=lambda t: len(t[1]))  # first of the most passing
    failing = tuple(s for s in scenes if s not in passing)
    return Ship(None, best, cost, encodings_of(best, remedies, lay), passing, failing)


def binaries_of(
    compiled: Mapping[str, Any] | None, qdq_model: Path, lay: Layout
) -> dict[str, tuple[Path, ...]]:
    """Per target, the context binaries the compile stage's manifest lists when it compiled
    ``qdq_model``; empty when it skipped or compiled something else."""
    if not compiled or compiled.get("status") != "compiled":
        return {}
    if compiled.get("source", {}).get("file") != qdq_model.as_posix():
        return {}
    return {
        t: tuple(lay.compile.root / b for b in bins)
        for t, bins in sorted(compiled.get("context_binaries", {}).items())
    }


def _cosine_evidence(row: RemedyRow, gate: GateRecord) -> str:
    bound = gate.cosine_min
    tail = f" (gate {bound})" if bound is not None else ""
    return f"{row.remedy}: output cosine {row.output_cosine:.4f}{tail}"


def next_steps(
    failing: Sequence[str], remedies: Remedies, stability: Mapping[str, StabilityRecord] | None
) -> list[Step]:
    """Per scene failing today, the cheapest step the measurements support, then more data
    where the stability curve says the scene's calibration set has not settled."""
    steps: list[Step] = []
    for scene in failing:
        v = remedies.get(scene)
        if v is None:
            steps.append(Step(scene, "evaluate remedies for this scene", "no remedies measured"))
            continue
        rows = v.remedies
        passing = [r for r in rows if r.passes_gate]
        own = next((r for r in passing if r.remedy not in SHARED), None)
        if own is not None and own.remedy == "per_scene":
            steps.append(
                Step(
                    scene,
                    f"ship a per-scene model ({own.cost})",
                    _cosine_evidence(own, v.gate),
                )
            )
        elif own is not None:
            steps.append(Step(scene, f"switch {own.cost}", _cosine_evidence(own, v.gate)))
        elif passing:
            first = passing[0]
            action = f"use {first.remedy} ({first.cost})"
            steps.append(Step(scene, action, _cosine_evidence(first, v.gate)))
        else:
            best = max(rows, key=lambda r: r.output_cosine)
            steps.append(
                Step(scene, "no remedy passes: revisit the model", _cosine_evidence(best, v.gate))
            )
        curve = (stability or {}).get(scene)
        if curve is not None and not settled(curve):
            n = curve.images
            steps.append(
                Step(
                    scene,
                    f"add about {n} captures of {scene} (double its calibration set)",
                    unsettled_text(curve),
                )
            )
    return steps
