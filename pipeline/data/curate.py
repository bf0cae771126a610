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
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.atomic import write_parquet
from pipeline.data.decode import hamming
from pipeline.layout import CurateOut
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
class Row:
    """One row of the curation table (:data:`CURATED_SCHEMA`)."""

    path: str
    sha256: str
    scene: str
    source: str
    session: str
    role: str  # calibration | evaluation | unused
    rank: int  # within the scene, 0-based; -1 when never ranked
    reason: str


@dataclass(frozen=True)
class Pick:
    path: str
    sha256: str
    scene: str
    source: str
    session: str
    dhash: str | None
    feature: tuple[float, ...]

    def row(self, role: str, rank: int, reason: str) -> Row:
        return Row(
            self.path, self.sha256, self.scene, self.source, self.session, role, rank, reason
        )


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


def _ineligible(r: dict[str, Any], p: CurateParams) -> str:
    """Why an ok manifest row cannot be picked ("" if it can): duplicate, include, exclude."""
    if r["duplicate_of"]:
        return f"exact duplicate of {r['duplicate_of']}"
    if p.include and not any(fnmatchcase(r["path"], g) for g in p.include):
        return "matches no curate.include pattern"
    pattern = next((g for g in p.exclude if fnmatchcase(r["path"], g)), None)
    if pattern is not None:
        return f"excluded by curate.exclude {pattern!r}"
    return ""


def _screen(manifest: pa.Table, p: CurateParams) -> tuple[dict[str, list[Pick]], list[Row]]:
    """The ok images grouped by scene, and a row for each one that cannot be picked."""
    by_scene: dict[str, list[Pick]] = {}
    rows: list[Row] = []
    for r in manifest.to_pylist():
        if r["status"] != "ok":
            continue
        feature = tuple(float(r.get(k) or 0.0) for k in FEATURES)
        pick = Pick(
            r["path"], r["sha256"], r["scene"], r["source"], r["session"], r.get("dhash"), feature
        )
        why = _ineligible(r, p)
        if why:
            rows.append(pick.row("unused", -1, why))
        else:
            by_scene.setdefault(r["scene"], []).append(pick)
    return by_scene, rows


def _without_near_duplicates(
    ranked: list[Pick], p: CurateParams, rows: list[Row]
) -> list[tuple[int, Pick]]:
    """(rank, pick) of the images that are no near duplicate of a better-ranked eligible one;
    the others go to ``rows`` as unused."""
    eligible: list[tuple[int, Pick]] = []
    for rank, pick in enumerate(ranked):
        near = None
        if p.near_duplicate_distance and pick.dhash:
            near = next(
                (
                    e.path
                    for _, e in eligible
                    if e.dhash and hamming(e.dhash, pick.dhash) <= p.near_duplicate_distance
                ),
                None,
            )
        if near is None:
            eligible.append((rank, pick))
            continue
        why = f"near duplicate of {near} (difference hash within {p.near_duplicate_distance} bits)"
        rows.append(pick.row("unused", rank, why))
    return eligible


def _calibration_order(rest: list[tuple[int, Pick]], p: CurateParams) -> tuple[list[int], str]:
    """The order in which calibration takes ``rest`` (indices), and how it was found."""
    if p.selection == "diversity" and rest:
        feats = np.array([pk.feature for _, pk in rest])
        feats = (feats - feats.mean(0)) / np.where(feats.std(0) > 0, feats.std(0), 1.0)
        order = _k_center(feats, len(rest))  # full greedy order; quota and caps applied later
        return order, "k-center greedy over luminance features, position"
    return list(range(len(rest))), "rank"


def _calibration(
    scene: str, rest: list[tuple[int, Pick]], quotas: tuple[int, int], p: CurateParams
) -> list[Row]:
    """Calibration picks from ``rest`` (up to the quota, within the session cap), then a row
    for every image of ``rest`` left out, with why."""
    n_eval, n_cal = quotas
    order, how = _calibration_order(rest, p)
    rows: list[Row] = []
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
        why = f"{how} {position} within the calibration quota {n_cal} of {scene!r}"
        rows.append(pick.row("calibration", rank, why))
    for idx, (rank, pick) in enumerate(rest):
        if idx in taken:
            continue
        capped = p.session_cap is not None and per_session.get(pick.session, 0) >= p.session_cap
        why = (
            f"session {pick.session!r} reached curate.session_cap {p.session_cap}"
            if capped and len(taken) < n_cal
            else f"over quota for {scene!r} (evaluation {n_eval}, calibration {n_cal})"
        )
        rows.append(pick.row("unused", rank, why))
    return rows


def _curate_scene(scene: str, picks: list[Pick], p: CurateParams) -> list[Row]:
    """One scene's rows: near duplicates, the evaluation quota by rank, then calibration."""
    rows: list[Row] = []
    ranked = sorted(picks, key=lambda x: (rank_key(p.seed, x.sha256), x.path))
    eligible = _without_near_duplicates(ranked, p, rows)
    n_eval = _quota(p.evaluation.get(scene, p.default_evaluation), len(eligible))
    n_cal = _quota(p.calibration.get(scene, p.default_calibration), len(eligible))
    for rank, pick in eligible[:n_eval]:
        why = f"rank {rank} in the evaluation quota {n_eval} of {scene!r}"
        rows.append(pick.row("evaluation", rank, why))
    return rows + _calibration(scene, eligible[n_eval:], (n_eval, n_cal), p)


def curate(manifest: pa.Table, p: CurateParams) -> pa.Table:
    """The curation table (:data:`CURATED_SCHEMA`): every ok image of ``manifest`` with its
    role and reason, sorted by role, scene, rank and path."""
    by_scene, rows = _screen(manifest, p)
    for scene in sorted(by_scene):
        rows += _curate_scene(scene, by_scene[scene], p)
    rows.sort(key=lambda r: (r.role, r.scene, r.rank, r.path))
    return pa.Table.from_pylist([asdict(r) for r in rows], schema=CURATED_SCHEMA)


def write(out: CurateOut, table: pa.Table) -> None:
    """``curated.parquet``: the picks, which the tensors stage reads; ``unused.parquet``: every
    other file with the reason it was left out (for audit; nothing downstream reads it, so
    captures that curation leaves out re-run nothing after curate)."""
    picked = pc.not_equal(table.column("role"), "unused")
    write_parquet(out.curated, table.filter(picked))
    write_parquet(out.unused, table.filter(pc.invert(picked)))
