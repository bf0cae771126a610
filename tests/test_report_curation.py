"""The report's Curation section, read through the typed curate summary as the curate stage
writes it: per scene and source what each quota took, and which sources lost picks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.atomic import write_json
from pipeline.data.curate import curate
from pipeline.data.curation_summary import (
    COUNTS,
    CurationSummary,
    SourceCounts,
    read_summary,
    summarize,
)
from pipeline.params import CurateParams
from pipeline.report import curation
from tests.manifests import day_manifest


def _written(tmp_path: Path, counts: dict[str, int]) -> CurationSummary:
    """The summary the curate stage writes for these images, read back typed."""
    p = CurateParams(calibration={"day": 6}, evaluation={"day": 2})
    write_json(tmp_path / "summary.json", summarize(curate(day_manifest(counts), p)))
    return read_summary(tmp_path / "summary.json")


def _cells(page: str) -> list[list[str]]:
    body = page.split("<tbody>", 1)[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", body)]


def test_section_reads_what_the_curate_stage_writes(tmp_path: Path) -> None:
    summary = _written(tmp_path, {"generic": 6, "vehicle": 40})
    day = summary.scenes["day"]
    rows = _cells(curation.section(summary))
    assert rows == [
        ["day", s, *(str(getattr(day[s], k)) for k in COUNTS)] for s in ("generic", "vehicle")
    ]
    assert sum(int(r[2]) for r in rows) == 6 and sum(int(r[3]) for r in rows) == 2  # the quotas
    assert sum(int(r[4]) for r in rows) == 46 - 8  # every eligible image no quota reached


def test_section_names_the_sources_that_lost_picks() -> None:
    day = {
        "generic": SourceCounts(calibration=7, evaluation=4, over_quota=8, ineligible=0),
        "vehicle": SourceCounts(calibration=9, evaluation=0, over_quota=0, ineligible=1),
    }
    night = {"vehicle": SourceCounts(calibration=6, evaluation=6, over_quota=3, ineligible=0)}
    page = curation.section(CurationSummary(scenes={"day": day, "night": night}))
    assert "<li><b>day</b>: generic lost 8</li><li><b>night</b>: vehicle lost 3</li>" in page
    assert _cells(page)[1] == ["day", "vehicle", "9", "0", "0", "1"]
    assert "calibration quota took" in page and "over quota (eligible, not picked)" in page


def test_section_says_when_no_source_lost_picks(tmp_path: Path) -> None:
    page = curation.section(_written(tmp_path, {"generic": 5, "vehicle": 3}))
    assert "No source lost picks" in page
    assert curation.section(None) == "<p>Curation summary not read.</p>"


def test_reader_rejects_a_summary_of_another_layout(tmp_path: Path) -> None:
    write_json(tmp_path / "summary.json", {"scenes": {"day": {"generic": {"taken": 3}}}})
    with pytest.raises(ValidationError, match="taken"):
        read_summary(tmp_path / "summary.json")
