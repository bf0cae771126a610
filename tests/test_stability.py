"""How many images are enough: curves from seeded subsets of per-image statistics."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipeline.analysis import stability
from pipeline.calibration.encodings import compute_encodings
from pipeline.calibration.statistics import Statistics
from pipeline.params import QuantizeParams, StabilityParams
from pipeline.quantization.observers import MinMax


@pytest.fixture(scope="module")
def per_image(centerface_view):
    """(600 images, 2, tensors): similar ranges, 30 images 20 % wider on the max side."""
    rng = np.random.default_rng(0)
    n, t = 600, len(centerface_view.kept_tensors)
    lo = -rng.uniform(0.9, 1.0, (n, t))
    hi = rng.uniform(0.9, 1.0, (n, t))
    hi[rng.choice(n, 30, replace=False)] *= 1.2
    return np.stack([lo, hi], axis=1)


def _encoder(view, per_image, qp):
    base = Statistics(MinMax.empty(view.kept_tensors), per_image, None, 0, 0)
    return lambda mm: compute_encodings(view, replace(base, minmax=mm), qp)


def test_scale_curve_settles_and_whole_set_is_exact(centerface_view, per_image):
    qp = QuantizeParams()
    scenes = ["day"] * 500 + ["night"] * 100
    seen = []

    def score(enc):  # records what it was asked to evaluate
        seen.append(enc)
        return float(len(seen)), 1.0

    draws = stability.Draws(
        centerface_view.kept_tensors,
        per_image,
        stability.groups_by_scene(scenes),
        _encoder(centerface_view, per_image, qp),
    )
    curves = stability.curves(
        draws, StabilityParams(sizes=(8, 16, 32, 64, 128, 256, 500)), 0, {"night": score}
    )
    by = {c.group: c for c in curves}
    assert set(by) == {"all", "day", "night"}
    assert by["all"].sizes == [8, 16, 32, 64, 128, 256, 500, 600]
    assert by["night"].sizes == [8, 16, 32, 64, 100]
    for c in curves:
        assert c.p95_scale_change[-1] == 0.0  # the whole set against itself
        assert c.p95_scale_change[0] > 0.05  # 8 images usually miss the wide ones
        assert c.enough is not None and c.enough > 8
        assert all(
            c.p95_scale_change[i] <= 0.05 for i in range(c.sizes.index(c.enough), len(c.sizes))
        )
    # only night has an evaluator: one evaluation per size, in order
    assert by["night"].output_sqnr_db == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert by["day"].output_sqnr_db == [None] * len(by["day"].sizes)


def test_histogram_modes_use_tf_curves():
    qp = QuantizeParams.model_validate({"activations": {"mode": "enhanced"}})
    assert stability.curve_mode(qp).activations.mode == "tf"
    assert stability.curve_mode(QuantizeParams()) == QuantizeParams()
