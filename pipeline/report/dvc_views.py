"""What DVC shows: metrics files with numbers and booleans only, and plot tables.

``dvc metrics show`` prints one row per file and one column per key, so every file has the same
three keys, ``cosine``, ``passes_gate`` (a boolean everywhere) and ``sqnr_db``, and the files
dvc.yaml declares as metrics are the headline only, so a bare ``dvc metrics show`` fits an
80-column terminal:

- ``out/report/metrics/<scene>.json``: the quantize stage's encodings on the scene;
- ``<scene>.ship.json``: the configuration the report ships, on the scene;
- ``ship.json``: that configuration's worst cosine and SQNR over the scenes, and whether it
  passes every one;
- ``<scene>.<backend>.json`` (:func:`pipeline.report.backends.metrics_files`): the quantize
  stage's encodings on a real backend.

Every remedy tried has its own file of the same shape under ``out/report/remedies/``
(``<scene>.<remedy>.json``, and ``<scene>.<remedy>.<backend>.json`` for a chosen remedy re-checked
on a real backend): a DVC output, not a declared metric (one row per remedy and scene would make
the bare table scroll), read with ``dvc metrics show out/report/remedies -R`` or
``dvc metrics diff --targets out/report/remedies -R``.

The plot tables carry a ``series`` column (scene, or stability group) that the custom template
``.dvc/plots/fieldcal_lines.json`` colours by, so one chart holds one concept with one line per
series; the model input's row (hundreds of dB, no quantization) is left out.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.analysis.artifacts import LayerRow, MetricsDocument, StabilityRecord
from pipeline.analysis.remedy_artifacts import RemedyVerdict

Metric = dict[str, float | bool]
Metrics = dict[str, Metric]
RemedyFiles = dict[str, Metric]


def _metric(cosine: float, sqnr_db: float, passes: bool) -> Metric:
    return {"cosine": float(cosine), "passes_gate": bool(passes), "sqnr_db": float(sqnr_db)}


def metrics_files(metrics: MetricsDocument, remedies: RemedyFiles, shipped: str | None) -> Metrics:
    """The declared metrics: file name (under the report's metrics folder) -> its metrics.

    ``shipped`` is the remedy the report's verdict ships (the closest one when none passes every
    scene), or None for the quantize stage's encodings.
    """
    out = {
        f"{scene}.json": _metric(m.output_cosine, m.output_sqnr_db, bool(m.gate.passed))
        for scene, m in metrics.scenes.items()
    }
    for scene in metrics.scenes:
        key = f"{scene}.json" if shipped is None else f"{scene}.{shipped}.json"
        out[f"{scene}.ship.json"] = (out if shipped is None else remedies)[key]
    rows = [out[f"{scene}.ship.json"] for scene in metrics.scenes]
    out["ship.json"] = _metric(
        min(float(r["cosine"]) for r in rows),
        min(float(r["sqnr_db"]) for r in rows),
        all(bool(r["passes_gate"]) for r in rows),
    )
    return dict(sorted(out.items()))


def remedy_files(remedies: Mapping[str, RemedyVerdict] | None) -> RemedyFiles:
    """Every remedy tried, per scene: file name (under ``out/report/remedies``) -> its metrics."""
    return {
        f"{scene}.{r.remedy}.json": _metric(r.output_cosine, r.output_sqnr_db, r.passes_gate)
        for scene, v in sorted((remedies or {}).items())
        for r in v.remedies
    }


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def layers_csv(layers: Mapping[str, Sequence[LayerRow]]) -> str:
    """Accumulated SQNR per layer, one series per scene, the model input left out."""
    rows = [
        [scene, r.layer_index, r.layer, r.op_type, r.sqnr_db]
        for scene, rs in sorted(layers.items())
        for r in rs
        if not r.is_input and math.isfinite(r.sqnr_db)
    ]
    return _csv(["series", "layer_index", "layer", "op_type", "sqnr_db"], rows)


def stability_csv(stability: Mapping[str, StabilityRecord] | None) -> str:
    """Scale change against the calibration subset size, one series per group."""
    rows = [
        [g, pt.images, pt.p95_scale_change, pt.output_sqnr_db]
        for g, v in sorted((stability or {}).items())
        for pt in v.curve
    ]
    return _csv(["series", "images", "p95_scale_change", "output_sqnr_db"], rows)
