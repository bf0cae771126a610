"""Curation you can read: per scene and source, what each quota took, and who lost picks."""

from __future__ import annotations

import json

import pyarrow as pa

from pipeline.data.curate import curate
from pipeline.data.curation_summary import summarize
from pipeline.data.ingest import MANIFEST_SCHEMA
from pipeline.params import CurateParams

P = CurateParams(calibration={"day": 6}, evaluation={"day": 2})


def _manifest(counts: dict[str, int]) -> pa.Table:
    rows = [
        {
            "path": f"{source}/day{i}.jpg",
            "sha256": f"{source}{i:04d}".ljust(64, "0"),
            "source": source,
            "session": "s" if source == "vehicle" else "",
            "status": "ok",
            "reason": "",
            "scene": "day",
        }
        for source, n in counts.items()
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)


def test_summary_counts_every_image_once_by_kind() -> None:
    table = curate(_manifest({"generic": 6, "vehicle": 4}), P)
    day = summarize(table)["scenes"]["day"]
    assert sum(sum(c.values()) for c in day.values()) == table.num_rows == 10
    assert sum(c["calibration"] for c in day.values()) == 6
    assert sum(c["evaluation"] for c in day.values()) == 2


def test_new_captures_show_which_source_lost_picks() -> None:
    before = summarize(curate(_manifest({"generic": 6, "vehicle": 2}), P))["scenes"]["day"]
    after = summarize(curate(_manifest({"generic": 6, "vehicle": 40}), P))["scenes"]["day"]
    assert after["generic"]["calibration"] < before["generic"]["calibration"]
    assert after["generic"]["over_quota"] > before["generic"]["over_quota"]


def test_summary_is_numbers_only() -> None:
    doc = summarize(curate(_manifest({"generic": 3, "vehicle": 3}), P))

    def leaves(x: object) -> list[object]:
        return [v for y in x.values() for v in leaves(y)] if isinstance(x, dict) else [x]

    assert all(isinstance(v, int) for v in leaves(doc))
    assert json.loads(json.dumps(doc)) == doc
