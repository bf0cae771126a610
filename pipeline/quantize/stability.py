"""How many calibration images are enough: encodings from seeded subsamples against the full set.

For each scene (and for all images together), subsets of 8, 16, 32, ... images (``repeats``
seeded draws each) give ``tf`` encodings from the per-image min/max statistics the calibration
already holds (no model run); each subset is compared with the full set by the relative change
of every activation's scale. The curve is the 95th percentile over tensors, averaged over draws;
``enough`` is the smallest size from which every larger size stays under ``tolerance``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

SIZES = (8, 16, 32, 64, 128, 256, 500, 1000)


def _scales(per_image: NDArray[np.float64], min_range: float) -> NDArray[np.float64]:
    """tf scales of every tensor from (images, 2, tensors) min/max."""
    lo = np.minimum(per_image[:, 0].min(0), 0.0)
    hi = np.maximum(per_image[:, 1].max(0), 0.0)
    hi = np.maximum(hi, lo + min_range)
    scales: NDArray[np.float64] = (hi - lo) / 255.0
    return scales


def curve(
    per_image: NDArray[np.float64],
    groups: Mapping[str, Sequence[int]],
    seed: int,
    repeats: int = 3,
    tolerance: float = 0.05,
    min_range: float = 0.01,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rng = np.random.default_rng(seed)
    for name, members in sorted(groups.items()):
        idx = np.asarray(members)
        if idx.size == 0:
            continue
        full = _scales(per_image[idx], min_range)
        points = []
        for size in [s for s in SIZES if s < idx.size] + [int(idx.size)]:
            changes = []
            for _ in range(repeats if size < idx.size else 1):
                pick = rng.choice(idx, size=size, replace=False)
                rel = np.abs(_scales(per_image[pick], min_range) - full) / full
                changes.append(float(np.percentile(rel, 95)))
            points.append({"images": size, "p95_scale_change": float(np.mean(changes))})
        enough = None
        for i, pt in enumerate(points):
            if all(q["p95_scale_change"] <= tolerance for q in points[i:]):
                enough = pt["images"]
                break
        out[name] = {
            "images": int(idx.size),
            "tolerance": tolerance,
            "enough": enough,
            "curve": points,
        }
    return out


def by_scene(
    per_image: NDArray[np.float64],
    scenes: Sequence[str],
    seed: int,
    tolerance: float,
    min_range: float,
) -> dict[str, Any]:
    """:func:`curve` for all images together and for each scene's images."""
    groups: dict[str, list[int]] = {"all": list(range(len(scenes)))}
    for i, scene in enumerate(scenes):
        groups.setdefault(scene, []).append(i)
    return curve(per_image, groups, seed, tolerance=tolerance, min_range=min_range)
