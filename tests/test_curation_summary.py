"""Curation you can read: per scene and source, what each quota took, and who lost picks."""

from __future__ import annotations

import json

from pipeline.data.curate import curate
from pipeline.data.curation_summary import summarize
from pipeline.params import CurateParams
from tests.manifests import day_manifest

P = CurateParams(calibration={"day": 6}, evaluation={"day": 2})


def test_summary_counts_every_image_once_by_kind() -> None:
    table = curate(day_manifest({"generic": 6, "vehicle": 4}), P)
    day = summarize(table)["scenes"]["day"]
    assert sum(sum(c.values()) for c in day.values()) == table.num_rows == 10
    assert sum(c["calibration"] for c in day.values()) == 6
    assert sum(c["evaluation"] for c in day.values()) == 2


def test_new_captures_show_which_source_lost_picks() -> None:
    before = summarize(curate(day_manifest({"generic": 6, "vehicle": 2}), P))["scenes"]["day"]
    after = summarize(curate(day_manifest({"generic": 6, "vehicle": 40}), P))["scenes"]["day"]
    assert after["generic"]["calibration"] < before["generic"]["calibration"]
    assert after["generic"]["over_quota"] > before["generic"]["over_quota"]


def test_summary_is_numbers_only() -> None:
    doc = summarize(curate(day_manifest({"generic": 3, "vehicle": 3}), P))

    def leaves(x: object) -> list[object]:
        return [v for y in x.values() for v in leaves(y)] if isinstance(x, dict) else [x]

    assert all(isinstance(v, int) for v in leaves(doc))
    assert json.loads(json.dumps(doc)) == doc
