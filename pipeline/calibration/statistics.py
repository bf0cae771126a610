"""What calibration collects, shared by its phases: :class:`Statistics` and the modes that need
histograms rather than ranges."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pipeline.errors import DataError
from pipeline.quantization.histogram import Pdf
from pipeline.quantization.observers import MinMax

HISTOGRAM_MODES = ("enhanced", "percentile")  # activation modes that need 3 x 512-bin PDFs


@dataclass(frozen=True)
class Statistics:
    """What calibration collected: merged ranges, per-image ranges, and histograms if asked."""

    minmax: MinMax
    per_image: NDArray[np.float64]  # (images, 2, tensors): min and max of each image
    pdfs: dict[str, Pdf] | None
    images_run: int  # model executions (cache misses)
    images_cached: int


def nan_error(name: str, raw: Path) -> DataError:
    """The error for a NaN in activation ``name`` on the image tensor ``raw``."""
    return DataError(
        f"tensor {name!r} contains NaN on {raw}; check the input tensors (mean/std) and the model"
    )
