from __future__ import annotations

import numpy as np

from pipeline.quantize.stability import by_scene


def test_enough_images_found_where_the_curve_settles():
    rng = np.random.default_rng(0)
    n, tensors = 600, 20
    # per-image ranges: mostly similar, a few images 20 % wider: small subsets miss them
    lo = -rng.uniform(0.9, 1.0, (n, tensors))
    hi = rng.uniform(0.9, 1.0, (n, tensors))
    hi[rng.choice(n, 30, replace=False)] *= 1.2
    per_image = np.stack([lo, hi], axis=1)  # (images, 2, tensors)
    scenes = ["day"] * 500 + ["night"] * 100
    out = by_scene(per_image, scenes, seed=0, tolerance=0.05, min_range=0.01)
    assert set(out) == {"all", "day", "night"}
    curve = out["all"]["curve"]
    assert [p["images"] for p in curve] == [8, 16, 32, 64, 128, 256, 500, 600]
    assert curve[-1]["p95_scale_change"] == 0.0
    assert curve[0]["p95_scale_change"] > 0.05  # 8 images usually miss the wide ones
    assert out["all"]["enough"] is not None and 16 <= out["all"]["enough"] <= 600
    assert out["night"]["images"] == 100
