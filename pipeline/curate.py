"""Curate: per-scene calibration subsets and a disjoint per-scene evaluation set.

Within a scene, images are ranked by ``sha256(seed, content hash)``: deterministic, independent
of file names and order, and stable when images are added (a new image takes its rank without
reshuffling the others). The first ``evaluation`` images of a scene evaluate, the next
``calibration`` images calibrate. Exact duplicates (same bytes) and excluded paths are recorded
with their reason and never picked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fnmatch import fnmatchcase

import pyarrow as pa

from pipeline.params import CurateParams

CURATED_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("scene", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("session", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),  # calibration | evaluation | unused
        pa.field("rank", pa.int32(), nullable=False),  # within the scene, 0-based
        pa.field("reason", pa.string(), nullable=False),
    ],
    metadata={"fieldcal.curated": "1"},
)


def rank_key(seed: int, sha256: str) -> str:
    return hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()


@dataclass(frozen=True)
class Pick:
    path: str
    sha256: str
    scene: str
    source: str
    session: str


def curate(manifest: pa.Table, p: CurateParams) -> pa.Table:
    rows: list[dict[str, object]] = []
    by_scene: dict[str, list[Pick]] = {}
    for r in manifest.to_pylist():
        if r["status"] != "ok":
            continue
        base = {k: r[k] for k in ("path", "sha256", "scene", "source", "session")}
        if r["duplicate_of"]:
            rows.append(
                base
                | {
                    "role": "unused",
                    "rank": -1,
                    "reason": f"exact duplicate of {r['duplicate_of']}",
                }
            )
            continue
        pattern = next((g for g in p.exclude if fnmatchcase(r["path"], g)), None)
        if pattern is not None:
            rows.append(
                base
                | {
                    "role": "unused",
                    "rank": -1,
                    "reason": f"excluded by curate.exclude {pattern!r}",
                }
            )
            continue
        by_scene.setdefault(r["scene"], []).append(Pick(**base))
    for scene in sorted(by_scene):
        picks = sorted(by_scene[scene], key=lambda x: (rank_key(p.seed, x.sha256), x.path))
        n_eval = p.evaluation.get(scene, p.default_evaluation)
        n_cal = p.calibration.get(scene, p.default_calibration)
        for rank, pick in enumerate(picks):
            if rank < n_eval:
                role, why = "evaluation", f"rank {rank} < evaluation quota {n_eval} for {scene!r}"
            elif rank < n_eval + n_cal:
                role = "calibration"
                why = f"rank {rank - n_eval} < calibration quota {n_cal} for {scene!r}"
            else:
                role = "unused"
                why = f"over quota for {scene!r} (evaluation {n_eval}, calibration {n_cal})"
            rows.append(vars(pick) | {"role": role, "rank": rank, "reason": why})
    rows.sort(key=lambda r: (str(r["role"]), str(r["scene"]), int(r["rank"]), str(r["path"])))  # type: ignore[call-overload]
    return pa.Table.from_pylist(rows, schema=CURATED_SCHEMA)
