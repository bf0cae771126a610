"""The evaluate stage's tables for ``dvc plots``: one CSV per scene of layer rows, one of scenes.

Floats are written as ``repr`` (shortest round-trip form), absent values as empty cells.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.analysis.artifacts import LayerRow, SceneMetrics
from pipeline.atomic import write_text

LAYER_CSV_COLUMNS = (
    "layer_index",
    "layer",
    "op_type",
    "sqnr_db",
    "cosine",
    "mse",
    "max_abs_error",
    "clip_rate",
    "sqnr_weights_only_db",
    "sqnr_activations_only_db",
    "dominant",
    "sqnr_layerwise_db",
    "sqnr_inference_db",
    "mean_image_sqnr_db",
    "tail_ratio",
)


def csv_cell(v: object) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def write_layer_csvs(folder: Path, layer_rows: Mapping[str, Sequence[LayerRow]]) -> None:
    """One CSV per scene (``dvc plots`` draws each file), stale scene files removed."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.csv"):
        if stale.stem not in layer_rows:
            stale.unlink()
    for scene, rows in layer_rows.items():
        buf = io.StringIO()
        wr = csv.writer(buf, lineterminator="\n")
        wr.writerow(LAYER_CSV_COLUMNS)
        for r in rows:
            doc = r.to_json()  # the row as layers.json has it: absent keys give empty cells
            wr.writerow([csv_cell(doc.get(c, "")) for c in LAYER_CSV_COLUMNS])
        write_text(folder / f"{scene}.csv", buf.getvalue())


def write_scene_csv(path: Path, scenes: Mapping[str, SceneMetrics]) -> None:
    """One row per scene for the per-scene bar chart (``dvc plots``)."""
    lines = ["scene,output_sqnr_db,output_cosine,face_miss_rate"]
    for scene, m in sorted(scenes.items()):
        miss = m.face_miss_rate
        cells = [scene, m.output_sqnr_db, m.output_cosine, "" if miss is None else miss]
        lines.append(",".join(csv_cell(c) for c in cells))
    write_text(path, "\n".join(lines) + "\n")
