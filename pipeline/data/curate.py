"""Curate: per-scene calibration subsets and a disjoint per-scene evaluation set.

Within a scene, images are ranked by ``sha256(seed, content hash)``: deterministic, independent
of file names and order, and stable when images are added (a new image takes its rank without
reshuffling the others). Then, per scene:

1. ineligible images are recorded with their reason: exact duplicates (same bytes), paths not
   matching ``include`` or matching ``exclude``, near duplicates (difference hash within
   ``near_duplicate_distance`` bits of a better-ranked image of the scene);
2. the first ``evaluation`` images by rank evaluate;
3. ``calibration`` images calibrate, chosen from the rest either by rank (``selection:
   random``) or by k-center greedy (``selection: diversity``) over a cheap per-image feature
   (z-scored luminance statistics from ingest: mean, spread, percentiles, dark and bright
   shares), starting from the best-ranked image, so the set spans what the scene looks like;
   no session gives more than ``session_cap`` calibration images.

Quotas are counts, or fractions (0 < q < 1) of the scene's eligible images.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.atomic import write_parquet
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
FEATURES = ("luma_mean", "luma_std", "luma_p01", "luma_p50", "luma_p99", "dark_frac", "bright_frac")


def rank_key(seed: int, sha256: str) -> str:
    return hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()


@dataclass(frozen=True)
class Pick:
    path: str
    sha256: str
    scene: str
    source: str
    session: str
    dhash: str | None
    feature: tuple[float, ...]


def _quota(q: float, eligible: int) -> int:
    return math.ceil(q * eligible) if 0 < q < 1 else int(q)


def _k_center(feats: np.ndarray, k: int) -> list[int]:
    """Greedy k-center: start at index 0, repeatedly add the point farthest from the chosen."""
    if k <= 0 or len(feats) == 0:
        return []
    chosen = [0]
    dist = np.linalg.norm(feats - feats[0], axis=1)
    while len(chosen) < min(k, len(feats)):
        nxt = int(np.argmax(dist))  # first maximum: deterministic
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(feats - feats[nxt], axis=1))
    return chosen


def curate(manifest: pa.Table, p: CurateParams) -> pa.Table:
    rows: list[dict[str, Any]] = []
    by_scene: dict[str, list[Pick]] = {}

    def unused(base: dict[str, Any], why: str) -> None:
        rows.append(base | {"role": "unused", "rank": -1, "reason": why})

    for r in manifest.to_pylist():
        if r["status"] != "ok":
            continue
        base = {k: r[k] for k in ("path", "sha256", "scene", "source", "session")}
        if r["duplicate_of"]:
            unused(base, f"exact duplicate of {r['duplicate_of']}")
            continue
        if p.include and not any(fnmatchcase(r["path"], g) for g in p.include):
            unused(base, "matches no curate.include pattern")
            continue
        pattern = next((g for g in p.exclude if fnmatchcase(r["path"], g)), None)
        if pattern is not None:
            unused(base, f"excluded by curate.exclude {pattern!r}")
            continue
        feature = tuple(float(r.get(k) or 0.0) for k in FEATURES)
        by_scene.setdefault(r["scene"], []).append(
            Pick(**base, dhash=r.get("dhash"), feature=feature)
        )
    for scene in sorted(by_scene):
        ranked = sorted(by_scene[scene], key=lambda x: (rank_key(p.seed, x.sha256), x.path))
        eligible: list[tuple[int, Pick]] = []
        for rank, pick in enumerate(ranked):
            near = None
            if p.near_duplicate_distance and pick.dhash:
                near = next(
                    (
                        e.path
                        for _, e in eligible
                        if e.dhash and _hamming(e.dhash, pick.dhash) <= p.near_duplicate_distance
                    ),
                    None,
                )
            if near is not None:
                rows.append(
                    vars(pick)
                    | {
                        "role": "unused",
                        "rank": rank,
                        "reason": (
                            f"near duplicate of {near} (difference hash within "
                            f"{p.near_duplicate_distance} bits)"
                        ),
                    }
                )
            else:
                eligible.append((rank, pick))
        n_eval = _quota(p.evaluation.get(scene, p.default_evaluation), len(eligible))
        n_cal = _quota(p.calibration.get(scene, p.default_calibration), len(eligible))
        for rank, pick in eligible[:n_eval]:
            rows.append(
                vars(pick)
                | {
                    "role": "evaluation",
                    "rank": rank,
                    "reason": f"rank {rank} in the evaluation quota {n_eval} of {scene!r}",
                }
            )
        rest = eligible[n_eval:]
        if p.selection == "diversity" and rest:
            feats = np.array([pk.feature for _, pk in rest])
            feats = (feats - feats.mean(0)) / np.where(feats.std(0) > 0, feats.std(0), 1.0)
            order = _k_center(feats, len(rest))  # full greedy order; quota and caps applied below
            how = "k-center greedy over luminance features, position"
        else:
            order = list(range(len(rest)))
            how = "rank"
        per_session: dict[str, int] = {}
        taken: set[int] = set()
        for position, idx in enumerate(order):
            rank, pick = rest[idx]
            if len(taken) >= n_cal:
                break
            if p.session_cap is not None and per_session.get(pick.session, 0) >= p.session_cap:
                continue
            per_session[pick.session] = per_session.get(pick.session, 0) + 1
            taken.add(idx)
            rows.append(
                vars(pick)
                | {
                    "role": "calibration",
                    "rank": rank,
                    "reason": f"{how} {position} within the calibration quota {n_cal} of {scene!r}",
                }
            )
        for idx, (rank, pick) in enumerate(rest):
            if idx in taken:
                continue
            capped = p.session_cap is not None and per_session.get(pick.session, 0) >= p.session_cap
            why = (
                f"session {pick.session!r} reached curate.session_cap {p.session_cap}"
                if capped and len(taken) < n_cal
                else f"over quota for {scene!r} (evaluation {n_eval}, calibration {n_cal})"
            )
            rows.append(vars(pick) | {"role": "unused", "rank": rank, "reason": why})
    for r in rows:
        r.pop("dhash", None)
        r.pop("feature", None)
    rows.sort(key=lambda r: (str(r["role"]), str(r["scene"]), int(r["rank"]), str(r["path"])))
    return pa.Table.from_pylist(rows, schema=CURATED_SCHEMA)


def _hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def write(folder: Path, table: pa.Table) -> None:
    """``curated.parquet``: the picks, which the tensors stage reads; ``unused.parquet``: every
    other file with the reason it was left out (for audit; nothing downstream reads it, so
    captures that curation leaves out re-run nothing after curate)."""
    picked = pc.not_equal(table.column("role"), "unused")
    write_parquet(folder / "curated.parquet", table.filter(picked))
    write_parquet(folder / "unused.parquet", table.filter(pc.invert(picked)))
