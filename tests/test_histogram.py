"""enhanced and percentile against libpymo's own outputs (docs §4.5, measured on aimet-onnx 2.42)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.quantization.histogram import (
    PDF_SIZE,
    Pdf,
    bin_counts,
    enhanced_encoding,
    percentile_encoding,
    support_of,
)
from tests.graphs import libpymo_data


def _pdf(*batches: np.ndarray) -> Pdf:
    p = Pdf()
    for b in batches:
        p.update(b)
    return p


D = libpymo_data()

# (case, encoding) -> (min, max, scale, offset) printed by libpymo (docs §4.5)
CASES = [
    (
        "asym",
        lambda: enhanced_encoding(_pdf(D)),
        (-4.463944911956787, 30.030174255371094, 0.13527105748653412, -33),
    ),
    (
        "sym",
        lambda: enhanced_encoding(_pdf(D), symmetric=True),
        (-28.893877029418945, 28.66814422607422, 0.2257334142923355, -128),
    ),
    (
        "two batches",
        lambda: enhanced_encoding(_pdf(D[:50000], D[50000:])),
        (-4.522585868835449, 4.703489303588867, 0.036180686205625534, -125),
    ),
    (
        "relu",
        lambda: enhanced_encoding(_pdf(np.maximum(D, 0))),
        (0.0, 30.0, 0.11764705926179886, 0),
    ),
    (
        "percentile 99.99",
        lambda: percentile_encoding(_pdf(D), 99.99),
        (-3.761697696237003, 3.851261927099789, 0.029854743620928596, -126),
    ),
]


@pytest.mark.parametrize(("case", "make", "want"), CASES, ids=[c[0] for c in CASES])
def test_libpymo_reference_vectors(case, make, want):
    e = make()
    lo, hi, scale, offset = want
    assert e.offset == offset
    assert e.scale == pytest.approx(scale, rel=1e-6)
    assert e.min == pytest.approx(lo, rel=1e-6, abs=1e-7)
    assert e.max == pytest.approx(hi, rel=1e-6, abs=1e-7)


def test_support_measured_on_libpymo():
    # getStatsHistogram() of libpymo on [0, 1]: 1536 bins from -1.0, width 1/512
    start, width = support_of(0.0, 1.0)
    assert (start, width) == (-1.0, 1 / 512)
    counts = bin_counts(np.array([0.0, 1.0, 0.0019], np.float32), start, width)
    assert counts.size == PDF_SIZE
    assert (counts[512], counts[1024]) == (2, 1)  # floor binning: 0.0019 lands in bin 512


def test_later_outliers_outside_the_first_support_are_dropped():
    p = _pdf(np.array([0.0, 1.0]), np.array([5.0, 10.0]))
    assert p.pdf.sum() == pytest.approx(0.5)


def test_all_zero_data_gives_the_valid_unit_encoding():
    e = enhanced_encoding(_pdf(np.zeros(10)))
    assert e.min <= 0.0 <= e.max and e.scale > 0


def test_no_data_is_an_error():
    with pytest.raises(ValueError, match="no statistics"):
        enhanced_encoding(Pdf())
