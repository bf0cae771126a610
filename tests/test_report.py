"""The report: verdict, next steps, rates with counts, charts; deterministic, offline HTML."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.analysis import advice
from pipeline.analysis.advice import Advice
from pipeline.analysis.artifacts import (
    CoverageVerdict,
    LayerRow,
    MetricsDocument,
    StabilityRecord,
)
from pipeline.analysis.remedy_artifacts import RemedyVerdict
from pipeline.atomic import write_json
from pipeline.data.curation_summary import CurationSummary, SourceCounts
from pipeline.layout import Layout
from pipeline.report import (
    ReportInputs,
    dvc_views,
    remedies_chart,
    render_html,
    render_markdown,
    search16,
    sqnr_chart,
)
from pipeline.report.actions import UnusedFile
from pipeline.report.numbers import percent, percent_beside, rate, wilson
from pipeline.report.verdict import next_steps, ship
from tests import remedy_records

LAY = Layout(Path("out"))


def _row(name: str, cos: float, passes: bool, cost: str = "c") -> dict[str, Any]:
    return {
        "remedy": name,
        "cost": cost,
        "output_sqnr_db": 10.0 * cos,
        "output_cosine": cos,
        "face_miss_rate": 0.0,
        "passes_gate": passes,
        "failures": [],
    }


def _remedies_doc(night_union: bool = True) -> dict[str, Any]:
    """remedies.json as the remedies stage writes it (tests edit it, then read it typed)."""
    gate = {"cosine_min": 0.99}
    return {
        "day": {
            "chosen": "mixed16_4",
            "why": "w",
            "gate": gate,
            "remedies": [
                _row("union", 0.97, False, "30 calibration images, all scenes"),
                _row("mixed16_4", 0.995, True, "4 activations at 16 bits: a, b, c, d"),
                _row("a16_all", 0.999, True, "all 9 activations at 16 bits"),
            ],
        },
        "night": {
            "chosen": "union" if night_union else "a16_all",
            "why": "w",
            "gate": gate,
            "remedies": [
                _row("union", 0.995 if night_union else 0.9, night_union),
                _row("mixed16_4", 0.996, True),
                _row("a16_all", 0.999, True, "all 9 activations at 16 bits"),
            ],
        },
    }


def _verdicts(doc: dict[str, Any]) -> dict[str, RemedyVerdict]:
    return {s: RemedyVerdict.model_validate(v) for s, v in doc.items()}


def _remedies(night_union: bool = True) -> dict[str, RemedyVerdict]:
    return _verdicts(_remedies_doc(night_union))


def _metrics() -> MetricsDocument:
    def scene(passed: bool, faces: int, missed: int) -> dict[str, Any]:
        return {
            "images": 4,
            "output_sqnr_db": 12.5,
            "output_cosine": 0.97,
            "worst_layer": "b",
            "worst_layer_own_sqnr_db": 18.0,
            "worst_layer_sqnr_db": 9.0,
            "worst_layer_clip_rate": 1.3e-5,
            "worst_layer_dominant": "activations",
            "gate": {"cosine_min": 0.99, "passed": passed},
            "outputs": {"out": {"sqnr_db": 12.5, "cosine": 0.97}},
            "faces": {
                "float_faces": faces,
                "quantized_faces": faces - missed,
                "missed": missed,
                "miss_rate": missed / faces if faces else 0.0,
                "spurious": 0,
                "mean_iou": None,
                "images_with_miss": [],
            },
        }

    return MetricsDocument.model_validate(
        {
            "passed": False,
            "run": {
                "model": "models/m.onnx",
                "model_sha256": "ab" * 32,
                "backend": "embedded",
                "activations": "tf 8-bit",
                "weights": "symmetric 8-bit per-channel",
                "bias_bitwidth": 32,
                "sqnr_signal": "golden",
                "simulation": "htp",
            },
            "scenes": {"day": scene(False, 1, 1), "night": scene(True, 0, 0)},
        }
    )


def _layers() -> dict[str, list[LayerRow]]:
    def row(i: int, name: str, op: str, db: float) -> LayerRow:
        return LayerRow(
            layer_index=i,
            layer=name,
            op_type=op,
            sqnr_db=db,
            sqnr_golden_db=db,
            sqnr_inference_db=db,
            mean_image_sqnr_db=db,
            sqnr_layerwise_db=db + 5,
            cosine=0.99,
            mse=0.0,
            max_abs_error=0.0,
            clip_rate=0.0,
            worst_image="x.jpg",
            worst_image_sqnr_db=db,
        )

    rows = [row(0, "input.1", "Input", 414.0), row(1, "a", "Conv", 20.0)]
    rows += [
        row(2, "b", "Relu", 12.0),
        row(3, "head", "Conv", 11.0),
        row(4, "out", "Sigmoid", 10.0),
    ]
    return {"day": rows, "night": rows}


def _stability() -> dict[str, StabilityRecord]:
    def curve(n: int, points: list[tuple[int, float]], enough: int) -> StabilityRecord:
        doc = {
            "images": n,
            "enough": enough,
            "tolerance": 0.05,
            "mode": "tf",
            "curve": [
                {"images": k, "p95_scale_change": c, "output_sqnr_db": 10.0, "output_cosine": 0.9}
                for k, c in points
            ],
        }
        return StabilityRecord.model_validate(doc)

    return {
        "day": curve(16, [(8, 0.23), (16, 0.0)], 16),
        "night": curve(32, [(16, 0.01), (32, 0.0)], 16),
    }


def _inputs(**over: Any) -> ReportInputs:
    advice = [
        Advice("channels_not_multiple_of_32", "head", 2.0, "m"),
        Advice("channels_not_multiple_of_32", "a", 24.0, "m"),
        Advice("channels_not_multiple_of_32", "b", 24.0, "m"),
        Advice("per_channel_spread", "w1", 0.04, "x (keep it)."),
        Advice("long_tail", "b", 0.2, "tail"),
    ]
    night = CoverageVerdict(images=12, requantize="yes", reason="clips", tensors=[])
    lost = SourceCounts(calibration=7, evaluation=4, over_quota=8, ineligible=0)
    kept = SourceCounts(calibration=9, evaluation=0, over_quota=0, ineligible=1)
    base: dict[str, Any] = {
        "layout": LAY,
        "metrics": _metrics(),
        "layers": _layers(),
        "calibration": {"day": 16, "night": 32},
        "advice": advice,
        "remedies": _verdicts(remedy_records.with_searches(_remedies_doc())),
        "curation": CurationSummary(scenes={"day": {"generic": lost, "vehicle": kept}}),
        "stability": _stability(),
        "coverage": {"s1": {"night": night}},
        "unused_files": [UnusedFile("vehicle/s1/bad.jpg", "quarantined", "truncated")],
        "files": 47,
    }
    return ReportInputs(**(base | over))


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [(1, 1, 0.2065, 1.0), (0, 2, 0.0, 0.6576), (5, 10, 0.2366, 0.7634), (0, 50, 0.0, 0.0713)],
)
def test_wilson_known_answers(k: int, n: int, lo: float, hi: float) -> None:
    got = wilson(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_rejects_no_trials() -> None:
    with pytest.raises(ValueError, match="n > 0"):
        wilson(0, 0)


def test_rate_says_too_few_and_nothing_to_judge() -> None:
    assert rate(1, 1, "faces") == "1 of 1 faces (95 % CI 21-100 %): too few to judge"
    assert rate(0, 0, "faces") == "no faces: nothing to judge"
    assert rate(3, 40, "faces") == "3 of 40 faces (95 % CI 3-20 %)"


@pytest.mark.parametrize(
    ("value", "limit", "shown"),
    [(1.3e-5, 1e-5, ("0.0013 %", "0.0010 %")), (7.8e-5, 1e-5, ("0.0078 %", "0.0010 %"))],
)
def test_percent_beside_shows_why_a_value_fails(
    value: float, limit: float, shown: tuple[str, str]
) -> None:
    assert percent_beside(value, limit) == shown


def test_percent_keeps_two_significant_digits() -> None:
    assert [percent(x) for x in (0.0, 1.3e-5, 0.4553)] == ["0 %", "0.0013 %", "45.5 %"]


def test_ship_picks_the_cheapest_configuration_passing_every_scene() -> None:
    s = ship(_remedies(), LAY)
    # mixed16_4 is per scene (its tensors differ by scene): a16_all is the first shared one
    assert (s.remedy, s.passing, s.failing) == ("a16_all", ("day", "night"), ())
    # the remedies stage writes the configuration passing every scene as the car's file
    assert s.encodings == Path("out/remedies/encodings/ship.json")
    assert s.qdq_model == Path("out/remedies/qdq/ship.qdq.onnx")  # named in the verdict too


_COMPILED = {
    "status": "compiled",
    "source": {"file": "out/remedies/qdq/ship.qdq.onnx", "sha256": "ab"},
    "targets": {"soc60": "soc60/manifest.json"},
    "context_binaries": {"soc60": ["soc60/model_ctx_qnn.bin"]},
}


def test_the_verdict_names_the_context_binary_compiled_from_what_ships() -> None:
    s = ship(_remedies(), LAY, _COMPILED)
    assert s.binaries == {"soc60": (Path("out/compile/soc60/model_ctx_qnn.bin"),)}
    page = render_html("T", _inputs(compiled=_COMPILED), worst_n=2)
    assert "context binary (soc60) <code>out/compile/soc60/model_ctx_qnn.bin</code>" in page
    md = render_markdown("T", _metrics(), s)
    assert "- context binary, soc60: `out/compile/soc60/model_ctx_qnn.bin`" in md


@pytest.mark.parametrize(
    "compiled",
    [
        None,
        {"status": "skipped: nothing ships", "targets": {}},
        _COMPILED | {"source": {"file": "out/quantize/model.qdq.onnx", "sha256": "cd"}},
    ],
    ids=["none", "skipped", "another model"],
)
def test_the_verdict_names_no_binary_not_compiled_from_what_ships(compiled) -> None:
    assert ship(_remedies(), LAY, compiled).binaries == {}


def test_ship_union_points_at_the_car_file() -> None:
    r = _remedies_doc()
    r["day"]["remedies"][0]["passes_gate"] = True
    s = ship(_verdicts(r), LAY)
    assert (s.remedy, s.encodings) == ("union", Path("out/remedies/encodings/ship.json"))


def test_nothing_ships_when_no_shared_configuration_passes_everywhere() -> None:
    r = _remedies_doc()
    r["night"]["remedies"][2]["passes_gate"] = False
    s = ship(_verdicts(r), LAY)
    # union and a16_all each pass one scene: the cheaper is the closest
    assert (s.remedy, s.best, s.failing) == (None, "union", ("day",))


def test_next_steps_name_the_tensors_and_ask_for_captures_when_unsettled() -> None:
    steps = next_steps(["day"], _remedies(), _stability())
    assert [s.action for s in steps] == [
        "switch 4 activations at 16 bits: a, b, c, d",
        "add about 16 captures of day (double its calibration set)",
    ]
    assert "cannot tell yet: the curve has not settled by 8 images" in steps[1].evidence


def test_report_leads_with_the_verdict_and_says_what_it_cannot_judge() -> None:
    page = render_html("T", _inputs(), worst_n=2)
    assert page.index("Verdict") < page.index("Next steps") < page.index("Per scene")
    assert "Ship <b>a16_all</b>" in page and "Passes 2 of 2 scenes" in page
    assert "1 of 1 faces missed (95 % CI 21-100 %): too few to judge" in page
    assert "no faces missed: nothing to judge" in page
    assert "vehicle/s1/bad.jpg" in page and "1 of 47 files not used" in page
    assert "1 of 1 session scene(s) need new encodings" in page
    assert "cannot tell yet: the curve has not settled by 8 images" in page
    assert "enough: 16 of 32 images" in page
    assert "0.0013 %" in page  # a clip rate, not 0.0000


def test_report_shows_the_search_under_remedies_and_the_curation_counts() -> None:
    page = render_html("T", _inputs(), worst_n=2)
    remedies, coverage = page.index('id="remedies"'), page.index('id="coverage"')
    assert page.index("Verdict") < remedies < page.index(search16.FOUND) < coverage
    assert "<td>3: 537, 373, 999</td>" in page and '<td class="n">31 of 64</td>' in page
    assert '<td class="n">462</td><td class="n">0.2400</td><td>removed</td>' in page
    assert "<td>not tried</td>" in page
    assert '<td class="n">2,216,960</td>' in page  # extra bytes of the chosen set
    assert page.index('id="curation"') < page.index("<li><b>day</b>: generic lost 8</li>")
    assert '<td>day</td><td>vehicle</td><td class="n">9</td><td class="n">0</td>' in page


def test_readiness_groups_what_needs_no_action() -> None:
    page = render_html("T", _inputs(), worst_n=2)
    assert (
        "<b>Unavoidable</b>: 1 head layer(s) whose channel counts the task sets: head (2)" in page
    )
    assert "<b>Already right</b>: 1 weight(s)" in page
    assert "<td>a, b</td>" in page  # one row for both 24-channel convolutions
    assert page.index(">long_tail<") < page.index(">channels_not_multiple_of_32<")


def test_report_is_deterministic_and_offline() -> None:
    a = render_html("T", _inputs(), worst_n=2)
    assert a == render_html("T", _inputs(), worst_n=2)
    urls = set(re.findall(r"https?://[^\"' ]+", a))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched


def test_sqnr_chart_has_units_names_and_gate_and_leaves_out_the_input() -> None:
    svg = sqnr_chart(_layers(), gate_db=15.0)
    assert "accumulated SQNR (dB, higher is better)" in svg
    assert "<title>day: layer b (Relu), 12.00 dB</title>" in svg
    assert "gate: SQNR ≥ 15 dB" in svg and 'stroke-dasharray="6 4"' in svg
    assert "input.1" not in svg and "414" not in svg


def test_remedies_chart_draws_the_cosine_gate() -> None:
    svg = remedies_chart(_remedies())
    assert "gate: cosine ≥ 0.99" in svg
    assert "<title>day: mixed16_4, cosine 0.9950, passes its gate</title>" in svg


def test_summary_starts_with_the_verdict() -> None:
    md = render_markdown("T", _metrics(), ship(_remedies(night_union=False), LAY))
    assert md.splitlines()[2].startswith(
        "**Ship a16_all** for the car: `out/remedies/encodings/ship.json`"
    )
    assert "| day | 4 | 12.50 | 0.970000 | 1 of 1 |" in md
    # every number names what produced it: the backend and the simulation's arithmetic
    assert "backend `embedded` (with the QNN HTP's fixed-point Conv and Add arithmetic)" in md


def test_dvc_metrics_hold_numbers_and_booleans_in_one_shape() -> None:
    per_remedy = dvc_views.remedy_files(_remedies())
    assert {"day.union.json", "night.a16_all.json", "night.union.json"} <= set(per_remedy)
    files = dvc_views.metrics_files(_metrics(), per_remedy, "a16_all")
    # the declared headline: per scene the quantize stage's encodings and what ships
    assert set(files) == {"day.json", "night.json", "day.ship.json", "night.ship.json", "ship.json"}
    for values in [*files.values(), *per_remedy.values()]:
        assert list(values) == ["cosine", "passes_gate", "sqnr_db"]
        assert isinstance(values["passes_gate"], bool)
        assert all(isinstance(values[k], float) for k in ("cosine", "sqnr_db"))
    assert files["night.ship.json"] == per_remedy["night.a16_all.json"]
    assert files["ship.json"] == {"cosine": 0.999, "passes_gate": True, "sqnr_db": 9.99}
    unshipped = dvc_views.metrics_files(_metrics(), per_remedy, None)
    assert unshipped["day.ship.json"] == unshipped["day.json"]  # nothing chosen: the 8-bit model


def test_dvc_plot_tables_have_a_series_column_and_no_input_row() -> None:
    lines = dvc_views.layers_csv(_layers()).splitlines()
    assert lines[0] == "series,layer_index,layer,op_type,sqnr_db"
    assert lines[1] == "day,1,a,Conv,20.0" and not any("input.1" in ln for ln in lines)
    stab = dvc_views.stability_csv(_stability()).splitlines()
    assert stab[:2] == ["series,images,p95_scale_change,output_sqnr_db", "day,8,0.23,10.0"]


def test_a_scene_no_remedy_saves_says_so_and_the_report_renders_without_remedies() -> None:
    r = _remedies_doc()
    for row in r["day"]["remedies"]:
        row["passes_gate"] = False
    r["day"]["chosen"] = None
    steps = next_steps(["day"], _verdicts(r), None)
    assert [s.action for s in steps] == ["no remedy passes: revisit the model"]
    assert "a16_all: output cosine 0.9990" in steps[0].evidence  # the closest one
    page = render_html("T", _inputs(remedies=None, stability=None, coverage={}), worst_n=1)
    assert "Remedies not evaluated; the quantize stage's encodings" in page
    assert "pass 1 of 2 scenes" in page and "No vehicle sessions checked" in page


def test_advice_reads_back_what_the_evaluate_stage_writes(tmp_path: Path) -> None:
    items = _inputs().advice
    write_json(tmp_path / "advice.json", advice.to_json(items))
    assert advice.read_advice(tmp_path / "advice.json") == list(items)
