"""DVC stage `report`: metrics + per-layer tables -> out/report/report.html and summary.md."""

import json
from collections import Counter

import pyarrow.parquet as pq

from pipeline import report
from pipeline.atomic import write_text
from pipeline.params import Params
from pipeline.stage import run


def main(params: Params) -> None:
    out, rp = params.paths.out, params.report
    metrics = json.loads((out / "evaluate" / "metrics.json").read_text(encoding="utf-8"))
    layers = json.loads((out / "evaluate" / "layers.json").read_text(encoding="utf-8"))
    advice = json.loads((out / "evaluate" / "advice.json").read_text(encoding="utf-8"))
    remedies = json.loads((out / "remedies" / "remedies.json").read_text(encoding="utf-8"))
    stability = json.loads((out / "stability" / "stability.json").read_text(encoding="utf-8"))
    index = pq.read_table(out / "tensors" / "calibration" / "index.parquet")
    calibration = dict(sorted(Counter(index.column("scene").to_pylist()).items()))
    page = report.render_html(
        rp.title,
        metrics,
        layers,
        calibration,
        params.evaluate.worst_layers,
        advice,
        remedies,
        stability,
    )
    write_text(out / "report" / "report.html", page)
    write_text(out / "report" / "summary.md", report.render_markdown(rp.title, metrics))


if __name__ == "__main__":
    run(main)
