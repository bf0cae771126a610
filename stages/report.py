"""DVC stage `report`: every earlier stage's verdicts -> out/report/report.html and summary.md."""

import json
import shutil
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import TypeAdapter

from pipeline import report
from pipeline.analysis import artifacts
from pipeline.analysis.advice import read_advice
from pipeline.analysis.remedy_artifacts import read_remedies
from pipeline.atomic import write_json, write_text
from pipeline.data.curation_summary import read_summary
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.report import backends, dvc_views, verdict
from pipeline.report.actions import UnusedFile
from pipeline.stage import run

_RECHECK = TypeAdapter(artifacts.RemedyRecheck)


def _compiled(lay: Layout) -> dict[str, Any]:
    """``out/compile/manifest.json``: a plain dict, as pipeline/backends/qnn_compile.py writes
    it (it has no model). Like every input of this stage it must exist (dvc.yaml declares it):
    a report silently missing a section would differ from the one the data gives."""
    return dict(json.loads(lay.compile.manifest.read_text(encoding="utf-8")))


def _unused(manifest: pa.Table) -> list[UnusedFile]:
    """The ingest manifest's rows whose status is not ``ok``."""
    rows = zip(*(manifest.column(c).to_pylist() for c in ("path", "status", "reason")), strict=True)
    return [UnusedFile(p, s, r) for p, s, r in rows if s != "ok"]


def main(params: Params) -> None:
    lay, rp = Layout.of(params.paths), params.report
    index = pq.read_table(lay.tensors.calibration.index)
    manifest = pq.read_table(lay.ingest.manifest, columns=["path", "status", "reason"])
    inputs = report.ReportInputs(
        metrics=artifacts.read_metrics(lay.evaluate.metrics),
        layers=artifacts.read_layers(lay.evaluate.layers),
        calibration=dict(sorted(Counter(index.column("scene").to_pylist()).items())),
        curation=read_summary(lay.curate.summary),
        advice=read_advice(lay.evaluate.advice),
        remedies=read_remedies(lay.remedies.remedies),
        stability=artifacts.read_stability(lay.stability.stability),
        coverage=artifacts.read_coverage(lay.coverage.coverage),
        remedies_recheck=artifacts.read_as(lay.remedies.recheck, _RECHECK),
        compiled=_compiled(lay),
        unused_files=_unused(manifest),
        files=manifest.num_rows,
        layout=lay,
    )
    write_text(lay.report.html, report.render_html(rp.title, inputs, params.evaluate.worst_layers))
    ship = verdict.ship(inputs.remedies, lay) if inputs.remedies else None
    write_text(lay.report.summary, report.render_markdown(rp.title, inputs.metrics, ship))
    write_dvc_views(lay, inputs, ship.best if ship is not None else None)


def write_dvc_views(lay: Layout, inputs: report.ReportInputs, shipped: str | None) -> None:
    """The metrics and plot tables dvc.yaml declares for `dvc metrics` / `dvc plots`."""
    for folder in (lay.report.metrics, lay.report.remedies, lay.report.plots):
        shutil.rmtree(folder, ignore_errors=True)  # this stage's own outputs: no stale file
    per_remedy = dvc_views.remedy_files(inputs.remedies)
    files = dvc_views.metrics_files(inputs.metrics, per_remedy, shipped)
    files |= backends.metrics_files(inputs.metrics.backends or {})
    per_remedy |= backends.remedy_files(inputs.remedies_recheck)
    for folder, table in ((lay.report.metrics, files), (lay.report.remedies, per_remedy)):
        for name, values in sorted(table.items()):
            write_json(folder / name, values)
    write_text(lay.report.plots / "layers.csv", dvc_views.layers_csv(inputs.layers))
    write_text(lay.report.plots / "stability.csv", dvc_views.stability_csv(inputs.stability))


if __name__ == "__main__":
    run(main)
