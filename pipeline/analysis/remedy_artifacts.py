"""What the remedies stage writes, typed: ``out/remedies/remedies.json`` is ``{scene:
RemedyVerdict}``, written through :func:`pipeline.analysis.artifacts.write` and read with
:func:`read_remedies` (the base class and the other stages' artifacts are in
:mod:`pipeline.analysis.artifacts`).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import TypeAdapter

from pipeline.analysis.artifacts import Artifact, GateRecord, read_as

# Remedies that are one encodings set for every scene, in cost order: what a car that cannot
# switch models can ship (the remedies stage builds them; the report's verdict ships the
# cheapest that passes every scene).
SHARED = (
    "generic",
    "union",
    "enhanced",
    "percentile",
    "per_tensor_weights",
    "per_channel_weights",
    "search16_all_scenes",
    "a16_all",
)


class RemedyRow(Artifact):
    """One remedy's oneshot metrics on a scene's evaluation images, against its gate."""

    remedy: str
    cost: str
    output_sqnr_db: float
    output_cosine: float
    face_miss_rate: float | None
    passes_gate: bool
    failures: list[str]


class SearchPoint(Artifact):
    """One evaluated set of 16-bit tensors."""

    tensors: list[str]
    extra_bytes: int  # activation memory added per inference (batch 1): one byte per element
    output_sqnr_db: float
    output_cosine: float
    face_miss_rate: float | None
    passes_gate: bool


class Removal(Artifact):
    """Whether one tensor of the chosen set was tried out of it, and what that gave."""

    tensor: str
    gain_db: float | None  # alone at 16 bits (None: not measured)
    tried: bool
    set_size: int | None  # size of the set it was removed from (None: not tried)
    output_sqnr_db_without: float | None
    passes_without: bool | None
    outcome: Literal["removed", "stays", "not tried"]
    why: str


class AnchorEstimate(Artifact):
    """What another tool's documented algorithm would spend on the same gate, applied to
    fieldcal's measured data (an estimate, not a run of that tool)."""

    tool: str
    evaluations: int
    set_size: int | None
    basis: str


class SearchRecord(Artifact):
    """What the search of one scene (or of every scene at once) did and found."""

    budget: int
    evaluations: int
    candidates: int  # tensors upstream of the gated outputs (the others cannot change them)
    not_upstream: list[str]  # seeds left out: no path from them to a gated output
    seed_ranking: list[str]  # worst own (layerwise) error first
    measured_gain_db: dict[str, float]  # tensor alone at 16 bits: output SQNR gain
    chosen: list[str] | None  # the smallest passing set found; None: none within budget
    why: str
    removals: list[Removal]  # per tensor of the set found by bisection: tried out or why not
    anchors: list[AnchorEstimate]  # AIMET / NNCF on the same gate, from their algorithms
    pareto: list[SearchPoint]  # by extra bytes: each point beats every cheaper one's SQNR


class CaptureProposal(Artifact):
    """Field sessions clip this scene: add in-vehicle captures of it, this many."""

    sessions: list[str]  # sessions whose coverage verdict clips in this scene
    worst_clip: str  # "tensor 123 clips 0.0013 % (limit 0.0010 %)"
    captures: int  # how many captures of the scene the stability curve asks for
    why: str


class RemedyVerdict(Artifact):
    """A scene's remedies and the cheapest that passes (``chosen``; ``None`` when none does)."""

    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset(
        {"search", "search_all_scenes", "captures"}
    )
    gate: GateRecord
    chosen: str | None
    why: str
    remedies: list[RemedyRow]
    search: SearchRecord | None = None  # the fewest 16-bit activations for this scene
    search_all_scenes: SearchRecord | None = None  # for every scene at once (one model)
    captures: CaptureProposal | None = None  # coverage says the scene clips in the field


_REMEDIES = TypeAdapter(dict[str, RemedyVerdict])


def read_remedies(path: Path) -> dict[str, RemedyVerdict]:
    return read_as(path, _REMEDIES)
