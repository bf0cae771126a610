"""DVC stage `report`: metrics + per-layer tables -> out/report/report.html and summary.md."""

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline import report
from pipeline.atomic import write_text
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.stage import run


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def main(params: Params) -> None:
    lay, rp = Layout.of(params.paths), params.report
    metrics = _json(lay.evaluate.metrics)
    index = pq.read_table(lay.tensors.calibration.index)
    calibration = dict(sorted(Counter(index.column("scene").to_pylist()).items()))
    page = report.render_html(
        rp.title,
        metrics,
        _json(lay.evaluate.layers),
        calibration,
        params.evaluate.worst_layers,
        _json(lay.evaluate.advice),
        _json(lay.remedies.remedies),
        _json(lay.stability.stability),
    )
    write_text(lay.report.html, page)
    write_text(lay.report.summary, report.render_markdown(rp.title, metrics))


if __name__ == "__main__":
    run(main)
