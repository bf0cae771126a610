"""The calibration record (``calibration.json``): every activation tensor of the model, its
calibrated range where QNN keeps it, and where it is quantized where QNN fuses it away."""

from __future__ import annotations

from pipeline.calibration.statistics import Statistics
from pipeline.graph.view import ModelView


def calibration_record(view: ModelView, stats: Statistics) -> dict[str, object]:
    """Every activation tensor of the model (``view.sha256`` names it): the kept ones with
    their calibrated range, the fused-away ones (Conv output before BN/ReLU) with the kept
    tensor QNN quantizes instead. ``min_measured`` is false where the min is a ReLU's bound, 0
    (``tf``/``symmetric``)."""
    kept = set(view.kept_tensors)
    exact = stats.pdfs is not None
    rows: list[dict[str, object]] = []
    for t in view.all_tensors:
        row: dict[str, object] = {
            "name": t,
            "op_type": view.producers.get(t, "Input"),
            "kept": t in kept,
            "quantized_at": view.fused_into.get(t, t),
        }
        if t in kept:
            lo, hi = stats.minmax.range_of(t)
            row |= {"min": lo, "max": hi, "min_measured": exact or t not in view.nonnegative}
        rows.append(row)
    return {"model_sha256": view.sha256, "images": stats.minmax.count, "tensors": rows}
