"""Statistics observers: merge per-batch statistics, so memory never grows with the dataset.

Min/max merge exactly and in any order, so per-image statistics can be cached by content and
re-used: a calibration over n cached + k new images runs the model k times and gives the same
encodings as a fresh run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.errors import DataError, NoStatisticsError


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
    def of(cls, names: Sequence[str], values: Mapping[str, NDArray[np.float32]]) -> MinMax:
        """Statistics of one batch; NaN anywhere is an error naming the tensor."""
        mins = np.empty(len(names))
        maxs = np.empty(len(names))
        for i, name in enumerate(names):
            v = values[name]
            mins[i] = float(v.min()) if v.size else np.inf
            maxs[i] = float(v.max()) if v.size else -np.inf
            if np.isnan(mins[i]) or np.isnan(maxs[i]):
                raise DataError(
                    f"tensor {name!r} contains NaN on a calibration input; check the input "
                    "tensors (mean/std) and the model"
                )
        return cls(tuple(names), mins, maxs, 1)

    def merge(self, other: MinMax) -> MinMax:
        if other.names != self.names:
            raise ValueError("cannot merge statistics of different tensor lists")
        return MinMax(
            self.names,
            np.minimum(self.mins, other.mins),
            np.maximum(self.maxs, other.maxs),
            self.count + other.count,
        )

    def range_of(self, name: str) -> tuple[float, float]:
        i = self.names.index(name)
        lo, hi = float(self.mins[i]), float(self.maxs[i])
        if lo > hi:
            raise NoStatisticsError(
                f"no calibration statistics for tensor {name!r}: the calibration set is empty "
                "or never reached it"
            )
        return lo, hi

    def to_arrays(self) -> dict[str, NDArray[np.float64]]:
        return {"mins": self.mins, "maxs": self.maxs}
