"""What curation took, per scene and source, as numbers only (a DVC metrics file).

``out/curate/summary.json``: ``{"scenes": {scene: {source: {calibration, evaluation,
over_quota, ineligible}}}}``, counts of images. ``calibration`` and ``evaluation`` are what
each quota took from that source; ``over_quota`` the eligible images no quota reached (they
lost their pick to better-ranked or more diverse images); ``ineligible`` duplicates and
excluded paths. When new captures arrive, ``dvc metrics diff`` shows which sources lost picks:
``scenes.day.generic.calibration 15 -> 7``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

COUNTS = ("calibration", "evaluation", "over_quota", "ineligible")


def _kind(role: str, rank: int) -> str:
    if role != "unused":
        return role
    return "ineligible" if rank < 0 else "over_quota"  # ineligible images get no rank


def summarize(table: pa.Table) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
    """Counts per scene, source and kind from the curate table (every file, picked or not)."""
    scenes: dict[str, dict[str, dict[str, int]]] = {}
    rows: Iterable[Mapping[str, object]] = table.select(
        ["scene", "source", "role", "rank"]
    ).to_pylist()
    for r in rows:
        by_source = scenes.setdefault(str(r["scene"]), {})
        counts = by_source.setdefault(str(r["source"]), dict.fromkeys(COUNTS, 0))
        counts[_kind(str(r["role"]), int(r["rank"]))] += 1  # type: ignore[call-overload]
    return {"scenes": {s: dict(sorted(v.items())) for s, v in sorted(scenes.items())}}


class SourceCounts(BaseModel):
    """One source's images in one scene, by what became of them (module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    calibration: int = Field(ge=0)
    evaluation: int = Field(ge=0)
    over_quota: int = Field(ge=0)
    ineligible: int = Field(ge=0)


class CurationSummary(BaseModel):
    """``out/curate/summary.json`` as :func:`summarize` writes it, typed for its readers."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    scenes: dict[str, dict[str, SourceCounts]]


def read_summary(path: Path) -> CurationSummary:
    return CurationSummary.model_validate_json(path.read_text(encoding="utf-8"))
