"""Histogram bookkeeping for ``enhanced`` / ``percentile``: supports, per-image counts, PDFs.

A tensor's histogram support is fixed, as in libpymo, by the first calibration image (in
input-list order) on which it is not all zero, and comes from that image's min/max, so cached
counts of unchanged images stay valid while that image is unchanged. Each image's counts are
cached with the supports they were binned with (:data:`ENTRY_SIZE` int64 per tensor).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pipeline.calibration.statistics import nan_error
from pipeline.native import kernels
from pipeline.quantization.histogram import PDF_SIZE, Pdf, support_of

HIST_KIND = "hist"  # the statistics cache's kind for histogram entries
ENTRY_SIZE = PDF_SIZE + 3  # counts, element count, support (start, width) as float64 bits


class Histograms:
    """Per-tensor PDFs over a calibration set, built in input-list order.

    libpymo fixes a tensor's support on the first batch where it is not all zero and ignores
    the all-zero batches before it; after it, the PDF is the mean of the per-batch PDFs. Every
    image of a set has the same tensor sizes, so that mean is the summed integer counts over
    (size x images): exact, and the same whichever images came from the cache. A cached entry
    records the support each tensor was binned with, so it is reused only where it matches."""

    def __init__(self, n: int, m: int) -> None:
        self.m = m
        self.supports = np.full((n, 2), np.nan)  # (first left edge, width) per tensor
        self.first = np.full(n, m)  # first image whose tensor is not all zero
        self.totals = np.zeros((n, PDF_SIZE), dtype=np.int64)
        self.sizes = np.zeros(n, dtype=np.int64)

    def undecided(self) -> bool:
        return bool((self.first == self.m).any())

    def _decide(self, i: int, t: int, lo: float, hi: float) -> None:
        if self.first[t] == self.m and (lo != 0.0 or hi != 0.0):
            self.first[t] = i
            self.supports[t] = support_of(lo, hi)

    def valid(self, i: int, mm: NDArray[np.float64], entry: NDArray[np.int64]) -> bool:
        """Decide supports from image ``i``'s known min/max; is its cached entry binned with
        the supports of every tensor that image ``i`` contributes to?"""
        for t in np.flatnonzero(self.first == self.m):
            self._decide(i, int(t), float(mm[0, t]), float(mm[1, t]))
        used = self.first <= i
        stored = entry[:, PDF_SIZE + 1 :].view(np.float64)
        return bool((stored[used] == self.supports[used]).all())

    def bin(
        self, i: int, acts: Sequence[NDArray[np.float32]], names: Sequence[str], raw: Path
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Image ``i``'s exact (2, tensors) min/max and its cache entry, deciding the supports
        of tensors first non-zero here. One pass per tensor, tensors on every core."""
        entry = np.zeros((len(names), ENTRY_SIZE), dtype=np.int64)
        mm = np.empty((2, len(names)))

        def one(t: int) -> None:
            x = acts[t]
            entry[t, PDF_SIZE] = x.size
            if not x.size:
                mm[:, t] = np.inf, -np.inf
                return
            if self.first[t] < i:  # support known: one read gives both
                start, width = self.supports[t]
                (lo, hi, nan), entry[t, :PDF_SIZE] = kernels.minmax_histogram(
                    x, start, width, PDF_SIZE
                )
            else:
                lo, hi, nan = kernels.minmax(x)
            if nan:
                raise nan_error(names[t], raw)
            mm[:, t] = lo, hi
            if self.first[t] >= i:
                self._decide(i, t, lo, hi)  # only where this image is the first non-zero one
                if self.first[t] == i:
                    start, width = self.supports[t]
                    entry[t, :PDF_SIZE] = kernels.histogram(x, start, width, PDF_SIZE)
            entry[t, PDF_SIZE + 1 :] = self.supports[t].view(np.int64)

        kernels.each(one, range(len(names)))
        return mm, entry

    def add(self, i: int, entry: NDArray[np.int64]) -> None:
        used = self.first <= i
        self.totals[used] += entry[used, :PDF_SIZE]
        self.sizes[:] = entry[:, PDF_SIZE]

    def pdfs(self, names: Sequence[str], per_image: NDArray[np.float64]) -> dict[str, Pdf]:
        out = {}
        for t, name in enumerate(names):
            pdf = Pdf(
                seen=True, min=float(per_image[:, 0, t].min()), max=float(per_image[:, 1, t].max())
            )
            if self.first[t] < self.m:
                k = self.m - int(self.first[t])
                pdf.set_support(float(self.supports[t, 0]), float(self.supports[t, 1]))
                pdf.pdf = self.totals[t] / (float(self.sizes[t]) * k)
                pdf.iterations = k
            out[name] = pdf
        return out
