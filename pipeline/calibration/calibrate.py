"""Former single module of calibration; kept only until the branches that import it are merged.

Use :class:`pipeline.calibration.collect.Calibrator` (augment_graph / collect_data /
compute_data), :mod:`pipeline.calibration.encodings` (encoding rules, quantizer_args),
:mod:`pipeline.calibration.record` (calibration_record) and
:mod:`pipeline.calibration.statistics` (Statistics, HISTOGRAM_MODES) instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from pipeline.calibration import record
from pipeline.calibration.collect import Calibrator, Progress
from pipeline.calibration.encodings import (
    activation_encoding,
    compute_encodings,
    quantizer_args,
    weight_encodings,
)
from pipeline.calibration.statistics import HISTOGRAM_MODES, Statistics
from pipeline.errors import NoStatisticsError
from pipeline.graph.view import ModelView
from pipeline.params import QuantizeParams, TensorsParams

__all__ = [
    "HISTOGRAM_MODES",
    "NoStatisticsError",
    "Statistics",
    "activation_encoding",
    "calibration_record",
    "collect",
    "compute_encodings",
    "quantizer_args",
    "weight_encodings",
]


def collect(
    view: ModelView,
    raws: Sequence[Path],
    tp: TensorsParams,
    model_sha: str,
    cache_root: Path | None,
    histograms: bool = False,
    batch_size: int = 1,
    progress: Progress = None,
) -> Statistics:
    """The old signature of :meth:`Calibrator.collect_data`."""
    cal = Calibrator(
        dataclasses.replace(view, sha256=model_sha),
        tp,
        QuantizeParams(batch_size=batch_size),
        cache_root,
    )
    return cal.collect_data(raws, histograms, progress)


def calibration_record(view: ModelView, stats: Statistics, model_sha: str) -> dict[str, object]:
    """The old signature of :func:`pipeline.calibration.record.calibration_record`."""
    return record.calibration_record(dataclasses.replace(view, sha256=model_sha), stats)
