"""The report's 16-bit search: what each search found, every tensor's removal record, the
Pareto front; per scene and for the one configuration every scene shares."""

from __future__ import annotations

import re
from typing import Any

from pipeline.analysis.artifacts import SceneMetrics
from pipeline.analysis.remedy_artifacts import RemedyVerdict
from pipeline.report import search16
from tests import remedy_records


def _scene(faces: int) -> SceneMetrics:
    return SceneMetrics.model_validate(
        {
            "images": 4,
            "output_sqnr_db": 14.7,
            "output_cosine": 0.98,
            "worst_layer": "537",
            "worst_layer_own_sqnr_db": None,
            "worst_layer_sqnr_db": 9.0,
            "worst_layer_clip_rate": 0.0,
            "worst_layer_dominant": "activations",
            "gate": {"sqnr_min_db": 17.0, "passed": False},
            "outputs": {"537": {"sqnr_db": 14.7, "cosine": 0.98}},
            "faces": {
                "float_faces": faces,
                "quantized_faces": faces,
                "missed": 0,
                "miss_rate": 0.0,
                "spurious": 0,
                "mean_iou": None,
                "images_with_miss": [],
            },
        }
    )


def _verdicts() -> dict[str, RemedyVerdict]:
    def scene() -> dict[str, Any]:
        return {"gate": {"sqnr_min_db": 17.0}, "chosen": None, "why": "w", "remedies": []}

    doc = remedy_records.with_searches({"day": scene(), "night": scene()})
    return {s: RemedyVerdict.model_validate(v) for s, v in doc.items()}


SCENES = {"day": _scene(16), "night": _scene(0)}


def _rows(page: str, title: str) -> list[list[str]]:
    """The cells of the table that follows ``<h3>title</h3>``, tags stripped."""
    block = page.split(f"<h3>{title}</h3>", 1)[1].split("</table>", 1)[0]
    return [
        [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
        for tr in re.findall(r"<tr>(.*?)</tr>", block.split("<tbody>", 1)[1])
    ]


def test_found_sets_name_their_tensors_bytes_and_evaluations_against_the_budget() -> None:
    rows = _rows(search16.section(_verdicts(), SCENES), search16.FOUND)
    assert rows == [
        ["day", "3: 537, 373, 999", "2,216,960", "31 of 64", "3 activations at 16 bits pass"],
        ["night", "none needed", "0", "2 of 64", "the 8-bit model already passes"],
        [search16.ALL_SCENES, "1: 410", "7,680", "30 of 64", "1 activations at 16 bits pass"],
    ]


def test_each_tensor_of_a_set_has_its_removal_record() -> None:
    rows = _rows(search16.section(_verdicts(), SCENES), "Removal records")
    by = {(r[0], r[1]): r[2:] for r in rows}
    assert len(rows) == 6  # day's 4 and the shared set's 2; night needed none
    assert by[("day", "462")] == ["0.2400", "removed", "17.0700", "the other 3 pass without it"]
    assert by[("day", "537")][1:3] == ["stays", "15.8900"]  # the score without it
    assert by[("day", "999")][:3] == ["not measured", "not tried", "n/a"]
    assert "budget was spent" in by[("day", "999")][3]
    assert by[(search16.ALL_SCENES, "410")][1:3] == ["stays", "15.4800"]
    assert by[(search16.ALL_SCENES, "387")][1] == "removed"


def test_pareto_front_counts_tensors_bytes_and_faces_and_marks_the_chosen_set() -> None:
    rows = _rows(search16.section(_verdicts(), SCENES), "Pareto front")
    day = [r for r in rows if r[0] == "day"]
    assert [r[1] for r in day] == ["0", "1: 537", "3: 537, 373, 999", "37"]  # 37: by count
    assert day[2][2] == "2,216,960" and day[2][3] == "17.9200" and day[2][6] == "pass (chosen)"
    assert day[1][5] == "16 of 16" and day[1][6] == "fail"  # miss rate 1.0 of the 16 faces
    night = [r for r in rows if r[0] == "night"]
    assert night == [["night", "0", "0", "18.1900", "0.9982", "no faces", "pass (chosen)"]]
    shared = [r for r in rows if r[0] == search16.ALL_SCENES]
    assert [r[5] for r in shared] == ["100.0 % (worst scene)", "0 % (worst scene)"]


def test_without_search_records_the_section_says_so() -> None:
    plain = {
        s: v.model_copy(update={"search": None, "search_all_scenes": None})
        for s, v in _verdicts().items()
    }
    assert search16.section(plain, SCENES) == "<p>The 16-bit search did not run.</p>"
    assert search16.section(None, SCENES) == "<p>The 16-bit search did not run.</p>"
