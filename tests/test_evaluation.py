"""Evaluation beyond the metric formulas: detections, gates, layerwise, advice, encodings diff."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.analysis import advice, artifacts, detect, evaluate, gates, runs, summary
from pipeline.analysis.metrics import LayerAcc
from pipeline.calibration.collect import Calibrator
from pipeline.cli import app
from pipeline.data.tensors import preprocess, read_raw, write_raw
from pipeline.graph.rewrite import with_outputs
from pipeline.graph.runtime import Runner
from pipeline.params import EvaluateParams, Gate, QuantizeParams, TensorsParams
from pipeline.quantization import encodings_json
from pipeline.quantization.simulate import build_layerwise_model


@pytest.fixture(scope="module")
def calibrated(centerface_view, photos, tmp_path_factory):
    tp = TensorsParams(height=256, width=256)
    folder = tmp_path_factory.mktemp("raws")
    raws = []
    for i, p in enumerate(photos[:6]):
        raws.append(folder / f"{i}.raw")
        write_raw(raws[-1], preprocess(Image.open(p), tp))
    calib = Calibrator(centerface_view, tp, QuantizeParams())
    return tp, raws, calib.compute_data(calib.collect_data(raws, histograms=False))


def test_centerface_decoder_finds_the_astronaut(centerface_view, photos):
    tp = TensorsParams(height=256, width=256, layout="NCHW")
    x = preprocess(Image.open(photos[0]), tp)  # astronaut.png
    out = Runner(centerface_view.model).run(x)
    boxes = detect.decode_centerface({k: v[0] for k, v in out.items()}, 0.5)
    assert len(boxes) == 1
    x1, y1, x2, y2, score = boxes[0]
    assert 0 < x1 < x2 < 256 and 0 < y1 < y2 < 256 and score > 0.5


def test_agreement_counts_misses_spurious_and_iou():
    ref = np.array([[0, 0, 10, 10, 0.9], [50, 50, 60, 60, 0.8]], float)
    got = np.array([[1, 1, 11, 11, 0.7], [100, 100, 110, 110, 0.6]], float)
    a = detect.Agreement()
    a.add(ref, got, "img.jpg")
    s = a.summary()
    assert (s.float_faces, s.missed, s.spurious) == (2, 1, 1)
    assert s.miss_rate == 0.5
    assert s.mean_iou == pytest.approx(81 / 119)
    assert s.images_with_miss == ["img.jpg"]


def test_layerwise_first_layer_equals_oneshot_and_later_layers_do_better(
    centerface_view, calibrated
):
    tp, raws, enc = calibrated
    view = centerface_view
    images = [runs.EvalImage(r, f"img{i}", "day") for i, r in enumerate(raws[:2])]
    res = evaluate.run_evaluation(
        view, enc, images, tp, runs.EvalOptions(attribution=True, layerwise=True)
    )["day"]
    first = view.kept_tensors[1]
    assert res.layers["layerwise"][first].sqnr() == pytest.approx(
        res.layers["full"][first].sqnr(), abs=1e-6
    )
    last = view.outputs[0]
    assert res.layers["layerwise"][last].sqnr() > res.layers["full"][last].sqnr() + 3
    # attribution: each single source of error is smaller than both together
    assert res.layers["weights_only"][last].sqnr() > res.layers["full"][last].sqnr()
    assert res.layers["activations_only"][last].sqnr() > res.layers["full"][last].sqnr()


def test_layerwise_model_outputs_every_kept_tensor(centerface_view, calibrated):
    tp, raws, enc = calibrated
    model, names = build_layerwise_model(centerface_view, enc)
    assert set(names) == set(centerface_view.kept_tensors) - {centerface_view.input_name}
    out = Runner(with_outputs(model, list(names.values())), "basic").run(
        read_raw(raws[0], tp), list(names.values())
    )
    assert all(np.isfinite(v).all() for v in out.values())


def _scene(cos: float, sqnr: float) -> runs.SceneResult:
    res = runs.SceneResult(images=1)
    acc = LayerAcc(n=1, sxx=1.0, syy=1.0, sxy=cos, see=10 ** (-sqnr / 10))
    res.layers["full"] = {"x": acc, "y": acc}
    return res


def test_gate_scene_default_and_floor():
    p = EvaluateParams(
        default_gate=Gate(cosine_min=0.9),
        gate_floor=Gate(cosine_min=0.95),
        gates={"night": Gate(cosine_min=0.999, sqnr_min_db=30)},
    )
    assert gates.gate_for("day", p).cosine_min == 0.95  # floor beats a laxer default
    night = gates.gate_for("night", p)
    assert (night.cosine_min, night.sqnr_min_db) == (0.999, 30)


def test_gate_failures_name_metric_value_threshold_and_layer():
    from onnx import TensorProto, helper

    from pipeline.graph import view as M

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
    )
    view = M.analyze(helper.make_model(g))
    results = {"night": _scene(0.98, 20.0), "day": _scene(0.9999, 40.0)}
    p = EvaluateParams(gates={"night": Gate(cosine_min=0.99)})
    metrics, _, failures = summary.summarize(view, results, p)
    assert [f.scene for f in failures] == ["night"]
    line = failures[0].line()
    assert (
        "night" in line
        and "output cosine 0.98" in line
        and "0.99" in line
        and "worst layer y" in line
    )
    assert metrics["day"].gate.passed and not metrics["night"].gate.passed


def layer_row(name: str, **fields: object) -> artifacts.LayerRow:
    """A layer row with neutral metrics and ``fields`` over them."""
    base = artifacts.LayerRow(
        layer_index=1,
        layer=name,
        op_type="Relu",
        sqnr_db=20.0,
        sqnr_golden_db=20.0,
        sqnr_inference_db=20.0,
        mean_image_sqnr_db=20.0,
        cosine=0.99,
        mse=0.0,
        max_abs_error=0.0,
        clip_rate=0.0,
        worst_image="a.jpg",
        worst_image_sqnr_db=20.0,
    )
    return base.model_copy(update=fields)


def _scene_metrics(cos: float, sqnr: float, worst: str, passed: bool) -> artifacts.SceneMetrics:
    return artifacts.SceneMetrics(
        images=1,
        output_sqnr_db=sqnr,
        output_cosine=cos,
        outputs={"y": artifacts.OutputMetric(sqnr_db=sqnr, cosine=cos)},
        worst_layer=worst,
        worst_layer_sqnr_db=sqnr - 3,
        worst_layer_clip_rate=0.0,
        worst_layer_dominant="n/a",
        gate=artifacts.GateRecord(cosine_min=0.99, passed=passed),
    )


def test_fieldcal_gate_cli(tmp_path):
    (tmp_path / "params.yaml").write_text("paths: {out: out}\n")
    doc = artifacts.MetricsDocument(
        run=artifacts.RunInfo(
            model="m.onnx",
            model_sha256="0" * 64,
            backend="embedded",
            activations="tf 8-bit",
            weights="symmetric 8-bit per-channel",
            bias_bitwidth=32,
            sqnr_signal="golden",
            simulation="htp",
        ),
        passed=False,
        scenes={
            "night": _scene_metrics(0.97, 12.0, "410", False),
            "day": _scene_metrics(0.999, 30.0, "376", True),
        },
    )
    artifacts.write(tmp_path / "out" / "evaluate" / "metrics.json", doc)
    res = CliRunner().invoke(app, ["gate", "--root", str(tmp_path)])
    assert res.exit_code == 3  # the check found something to act on (README: exit codes)
    lines = [ln for ln in res.output.splitlines() if ln.startswith("FAIL")]
    assert lines == ["FAIL scene 'night': output cosine 0.97 fails its gate 0.99; worst layer 410"]


def test_artifacts_round_trip_and_omit_absent_keys(tmp_path):
    """Written through the models, read back through them: the same bytes; absent optional
    keys are left out, not written as null."""
    rows = {"day": [layer_row("r"), layer_row("s", sqnr_layerwise_db=25.0, dominant="weights")]}
    path = tmp_path / "layers.json"
    artifacts.write(path, rows)
    doc = json.loads(path.read_text())
    assert "sqnr_layerwise_db" not in doc["day"][0] and doc["day"][1]["dominant"] == "weights"
    assert doc["day"][0]["mean_image_sqnr_db"] == 20.0
    again = tmp_path / "again.json"
    artifacts.write(again, artifacts.read_layers(path))
    assert again.read_bytes() == path.read_bytes()
    doc["day"][0]["typo"] = 1
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="typo"):
        artifacts.read_layers(path)


def test_worst_layer_rule_prefers_own_error_when_measured():
    rows = [
        layer_row("a", sqnr_db=5.0, sqnr_layerwise_db=30.0),  # bad only downstream of others
        layer_row("b", sqnr_db=10.0, sqnr_layerwise_db=12.0),
        layer_row("c", sqnr_db=8.0),  # no own error: its accumulated error counts
        layer_row("x", op_type="Input", sqnr_db=1.0),
    ]
    assert [r.layer for r in artifacts.worst_rows(rows)] == ["c", "b", "a"]
    assert artifacts.worst_first([("b", None, 3.0), ("a", None, 3.0)]) == ["a", "b"]


def test_advice_flags_standalone_bn_channels_and_spread():
    from onnx import TensorProto, helper, numpy_helper

    from pipeline.graph import view as M

    rng = np.random.default_rng(0)
    w = rng.normal(size=(24, 3, 3, 3)).astype(np.float32) * 0.01
    w[0] *= 100  # one loud channel: the median channel uses ~1 % of the tensor's range
    inits = [numpy_helper.from_array(w, "w")] + [
        numpy_helper.from_array(np.ones(24, np.float32) * v, n)
        for n, v in (("g", 1), ("b", 0), ("m", 0), ("v", 1))
    ]
    g = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("BatchNormalization", ["r", "g", "b", "m", "v"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 24, 6, 6])],
        inits,
    )
    view = M.analyze(helper.make_model(g))
    rows = {"day": [layer_row("r", tail_ratio=0.05)]}
    kinds = {(a.kind, a.layer) for a in advice.advise(view, False, "tf", rows)}
    assert ("standalone_batchnorm", "y") in kinds
    assert ("channels_not_multiple_of_32", "r") in kinds
    assert ("per_channel_spread", "w") in kinds
    assert ("long_tail", "r") in kinds


def test_encodings_diff_cli(tmp_path, calibrated):
    _, _, enc = calibrated
    from dataclasses import replace

    from pipeline.atomic import write_json

    a = tmp_path / "a.json"
    write_json(a, encodings_json.to_1_0_0(enc, {}))
    moved = dict(enc.activations)
    name = next(iter(k for k in moved if k != "input.1"))
    moved[name] = replace(moved[name], scale=moved[name].scale * 1.5)
    b = tmp_path / "b.json"
    write_json(b, encodings_json.to_1_0_0(replace(enc, activations=moved), {}))
    res = CliRunner().invoke(
        app, ["encodings", "diff", str(a), str(b), "--json", str(tmp_path / "d.json")]
    )
    assert res.exit_code == 0, res.output
    assert res.output.startswith("1 tensor(s) moved")
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["changes"][0]["tensor"] == name and d["changes"][0]["scale_change"] == pytest.approx(
        0.5
    )


def test_metrics_do_not_depend_on_thread_counts(centerface_view, calibrated, monkeypatch):
    """Sums run in a fixed order inside each kernel and tensors are only spread across threads,
    so one thread (onnxruntime and kernels) gives the same bytes as every core."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.native import kernels

    tp, raws, enc = calibrated
    images = [runs.EvalImage(r, f"img{i}", "day") for i, r in enumerate(raws[:2])]
    opts = runs.EvalOptions(attribution=True, layerwise=True)

    def summaries() -> str:
        res = evaluate.run_evaluation(centerface_view, enc, images, tp, opts)["day"]
        return json.dumps(
            {
                v: {t: a.summary("golden").to_json() for t, a in accs.items()}
                for v, accs in res.layers.items()
            },
            sort_keys=True,
        )

    many = summaries()
    monkeypatch.setenv("FIELDCAL_THREADS", "1")
    with ThreadPoolExecutor(max_workers=1) as one:
        monkeypatch.setattr(kernels, "_pool", lambda: one)
        assert summaries() == many
