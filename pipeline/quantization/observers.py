"""Statistics observers: per-image statistics merged, so memory never grows with the dataset.

Min/max merge exactly and in any order, so per-image statistics can be cached by content and
re-used: a calibration over n cached + k new images runs the model k times and gives the same
encodings as a fresh run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.errors import NoStatisticsError


@dataclass(frozen=True)
class MinMax:
    """Per-tensor (min, max) over everything seen, tensors in a fixed order."""

    names: tuple[str, ...]
    mins: NDArray[np.float64]
    maxs: NDArray[np.float64]
    count: int  # images folded in

    @classmethod
    def empty(cls, names: Sequence[str]) -> MinMax:
        n = len(names)
        return cls(tuple(names), np.full(n, np.inf), np.full(n, -np.inf), 0)

    @classmethod
    def of_images(cls, names: Sequence[str], per_image: NDArray[np.float64]) -> MinMax:
        """Merged over (images, 2, tensors) per-image mins and maxs."""
        if not per_image.shape[0]:
            return cls.empty(names)
        return cls(tuple(names), per_image[:, 0].min(0), per_image[:, 1].max(0), per_image.shape[0])

    def range_of(self, name: str) -> tuple[float, float]:
        i = self.names.index(name)
        lo, hi = float(self.mins[i]), float(self.maxs[i])
        if lo > hi:
            raise NoStatisticsError(
                f"no calibration statistics for tensor {name!r}: the calibration set is empty "
                "or never reached it"
            )
        return lo, hi
