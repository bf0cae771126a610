"""DVC stage `report`: every earlier stage's verdicts -> out/report/report.html and summary.md."""

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline import report
from pipeline.atomic import write_json, write_text
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.report import backends, dvc_views, verdict
from pipeline.stage import run


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def main(params: Params) -> None:
    lay, rp = Layout.of(params.paths), params.report
    index = pq.read_table(lay.tensors.calibration.index)
    manifest = pq.read_table(lay.ingest.manifest, columns=["path", "status", "reason"])
    inputs = report.ReportInputs(
        metrics=_json(lay.evaluate.metrics),
        layers=_json(lay.evaluate.layers),
        calibration=dict(sorted(Counter(index.column("scene").to_pylist()).items())),
        advice=_json(lay.evaluate.advice),
        remedies=_json(lay.remedies.remedies),
        stability=_json(lay.stability.stability),
        coverage=_json(lay.coverage.coverage),
        remedies_recheck=_json(lay.remedies.recheck) if lay.remedies.recheck.is_file() else None,
        compiled=_json(lay.compile.manifest) if lay.compile.manifest.is_file() else None,
        unused_files=[r for r in manifest.to_pylist() if r["status"] != "ok"],
        files=manifest.num_rows,
        layout=lay,
    )
    write_text(lay.report.html, report.render_html(rp.title, inputs, params.evaluate.worst_layers))
    ship = verdict.ship(inputs.remedies, lay) if inputs.remedies else None
    write_text(lay.report.summary, report.render_markdown(rp.title, inputs.metrics, ship))
    write_dvc_views(lay, inputs, ship.best if ship is not None else None)


def write_dvc_views(lay: Layout, inputs: report.ReportInputs, shipped: str | None) -> None:
    """The metrics and plot tables dvc.yaml declares for `dvc metrics` / `dvc plots`."""
    for folder in (lay.report.metrics, lay.report.plots):
        shutil.rmtree(folder, ignore_errors=True)  # this stage's own outputs: no stale file
    files = dvc_views.metrics_files(inputs.metrics, inputs.remedies, shipped)
    files |= backends.metrics_files(inputs.metrics, inputs.remedies_recheck)
    for name, values in sorted(files.items()):
        write_json(lay.report.metrics / name, values)
    write_text(lay.report.plots / "layers.csv", dvc_views.layers_csv(inputs.layers))
    write_text(lay.report.plots / "stability.csv", dvc_views.stability_csv(inputs.stability))


if __name__ == "__main__":
    run(main)
