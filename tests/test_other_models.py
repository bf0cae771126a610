"""Models other than the demo: Gemm/MatMul weights, BN folding without bias, ReLU6 fusion, NHWC
input, an opset older than 13 -- analysed, quantized and simulated on real onnxruntime."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from pipeline.calibration.collect import Calibrator
from pipeline.calibration.encodings import compute_encodings
from pipeline.errors import DataError, ModelError
from pipeline.graph.load import prepare
from pipeline.graph.runtime import Runner
from pipeline.graph.view import analyze, check_input_spec
from pipeline.params import QuantizeParams, TensorsParams
from pipeline.quantization.simulate import SimOptions, build_quantized_model
from tests.graphs import initializer, model_of, view_of, write_raws
from tests.photos import photo_raws


def small_model(nhwc: bool = False, opset: int = 13) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "image"
    if nhwc:
        nodes.append(helper.make_node("Transpose", [x], ["x_nchw"], perm=[0, 3, 1, 2]))
        x = "x_nchw"
    inits += [
        initializer("w1", rng.normal(size=(8, 3, 3, 3)) * 0.2),
        initializer("bn_g", rng.uniform(0.5, 1.5, 8)),
        initializer("bn_b", rng.normal(size=8)),
        initializer("bn_m", rng.normal(size=8) * 0.1),
        initializer("bn_v", rng.uniform(0.5, 2, 8)),
        initializer("w2", rng.normal(size=(8, 8, 3, 3)) * 0.2),
        initializer("b2", rng.normal(size=8)),
        initializer("lo", np.array(0.0)),
        initializer("hi", np.array(6.0)),
        initializer("fc_w", rng.normal(size=(16, 8)) * 0.3),
        initializer("fc_b", rng.normal(size=16)),
        initializer("mm_w", rng.normal(size=(16, 4)) * 0.3),
    ]
    nodes += [
        helper.make_node("Conv", [x, "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_g", "bn_b", "bn_m", "bn_v"], ["bn1"]),
        helper.make_node("Relu", ["bn1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc"], transB=1),
        helper.make_node("Relu", ["fc"], ["fc_r"]),
        helper.make_node("MatMul", ["fc_r", "mm_w"], ["logits"]),
    ]
    shape = ["N", "H", "W", 3] if nhwc else ["N", 3, "H", "W"]
    g = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    if opset < 11:  # Clip takes min/max as attributes before opset 11
        nodes[5 if nhwc else 4] = helper.make_node("Clip", ["c2"], ["r2"], min=0.0, max=6.0)
        g = helper.make_graph(
            nodes, "small", g.input, g.output, [i for i in inits if i.name not in ("lo", "hi")]
        )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_analysis_of_gemm_matmul_bn_relu6():
    v = analyze(small_model())
    ops = {op.op_type: op for op in v.weighted}
    assert set(ops) == {"Conv", "Gemm", "MatMul"}
    assert ops["Gemm"].axis == 0 and ops["MatMul"].axis == 1
    assert ops["MatMul"].bias_name == ""
    conv1 = next(op for op in v.weighted if op.weight_name == "w1")
    assert conv1.folded_bn is not None and conv1.bias_name == "bn_b"  # BN's beta carries the bias
    assert v.fused_into["c1"] == "r1" and v.fused_into["c2"] == "r2"  # Conv+BN+ReLU, Conv+ReLU6
    assert "c2" not in v.kept_tensors and "r2" in v.kept_tensors


@pytest.mark.parametrize(("nhwc", "opset"), [(False, 13), (True, 13), (False, 9)])
def test_quantize_and_simulate_other_models(nhwc, opset, photos, tmp_path):
    m = small_model(nhwc, opset)
    if opset < 13:
        m = prepare(m)
    v = analyze(m)
    assert v.input_layout == ("NHWC" if nhwc else "NCHW")
    tp = TensorsParams(height=32, width=32, layout="NCHW")
    raws = photo_raws(photos, tmp_path, tp)
    stats = Calibrator(v, tp, QuantizeParams()).collect_data(raws)
    for bw in (8, 16):
        qp = QuantizeParams(activations={"bitwidth": bw}, weights={"bitwidth": bw})
        enc = compute_encodings(v, stats, qp)
        assert len(enc.weights["fc_w"]) == 16 and len(enc.weights["mm_w"]) == 4  # per channel
        assert "mm_w__bias" not in enc.biases and set(enc.biases) == {"bn_b", "b2", "fc_b"}
        x = __import__("pipeline.data.tensors", fromlist=["read_raw"]).read_raw(
            raws[0], tp, v.input_layout
        )
        ref = Runner(v.model).run(x)["logits"]
        got = Runner(build_quantized_model(v, enc, SimOptions()), "basic").run(x)["logits"]
        err = np.abs(got - ref).max() / np.abs(ref).max()
        assert err < (0.05 if bw == 8 else 1e-3), (bw, err)


def test_nhwc_spec_mismatch_names_layout():
    v = analyze(model_of([helper.make_node("Relu", ["x"], ["y"])], shape=[1, 64, 64, 3]))
    with pytest.raises(ModelError, match=r"NHWC.*height differs"):
        check_input_spec(v, 32, 64)


@pytest.mark.parametrize("histograms", [False, True])  # in-graph ranges; compiled kernels
@pytest.mark.parametrize("where", [None, 0, 37, 47])  # every element; one, first to last
def test_nan_activation_is_a_clear_error_naming_the_tensor(tmp_path, histograms, where):
    """onnxruntime's in-graph max and min skip a NaN anywhere but first: a sum catches it."""
    v = view_of(
        [helper.make_node("Log", ["x"], ["logx"]), helper.make_node("Relu", ["logx"], ["y"])]
    )
    tp = TensorsParams(height=4, width=4, layout="NCHW")
    x = -np.ones((1, 3, 4, 4), np.float32)  # log of a negative number is NaN
    if where is not None:
        x = np.ones_like(x)
        x.flat[where] = -1
    with pytest.raises(DataError, match=r"tensor 'logx' contains NaN"):
        Calibrator(v, tp, QuantizeParams()).collect_data(
            write_raws(tmp_path, [x]), histograms=histograms
        )


def test_infinities_of_both_signs_are_a_valid_range_not_a_nan(tmp_path):
    """+inf beside -inf makes the in-graph sum NaN too; the range is still measured."""
    v = view_of(
        [helper.make_node("Div", ["x", "zero"], ["q"]), helper.make_node("Relu", ["q"], ["y"])],
        [initializer("zero", np.array(0.0))],
    )
    tp = TensorsParams(height=4, width=4, layout="NCHW")
    x = np.ones((1, 3, 4, 4), np.float32)
    x.flat[5] = -1
    stats = Calibrator(v, tp, QuantizeParams()).collect_data(write_raws(tmp_path, [x]))
    assert stats.minmax.mins[v.kept_tensors.index("q")] == -np.inf
    assert stats.minmax.maxs[v.kept_tensors.index("q")] == np.inf


def test_histograms_when_a_tensor_is_all_zero_on_the_first_images(tmp_path):
    """libpymo fixes a tensor's histogram support on the first image where it is not all zero.
    Here ``r = Relu(x - 10)`` is zero on dark images: adding a bright one decides its support;
    cached and fresh runs agree bit for bit and only new images run."""
    v = view_of(
        [
            helper.make_node("Sub", ["x", "ten"], ["d"]),
            helper.make_node("Relu", ["d"], ["r"]),
            helper.make_node("Add", ["x", "r"], ["y"]),
        ],
        [initializer("ten", np.array(10.0))],
    )
    tp = TensorsParams(height=8, width=8, layout="NCHW")
    rng = np.random.default_rng(0)
    peaks = [5.0, 6.0, 20.0, 15.0]  # dark, dark, bright, bright
    raws = write_raws(tmp_path, [rng.uniform(0, p, (1, 3, 8, 8)).astype(np.float32) for p in peaks])
    cached = Calibrator(replace(v, sha256="s" * 64), tp, QuantizeParams(), tmp_path / "cache")
    first = cached.collect_data(raws[:2], histograms=True)
    assert first.pdfs is not None and first.pdfs["r"].iterations == 0  # no support yet
    again = cached.collect_data(raws, histograms=True)
    assert (again.images_run, again.images_cached) == (2, 2)
    fresh = Calibrator(v, tp, QuantizeParams()).collect_data(raws, histograms=True)
    assert again.pdfs is not None and fresh.pdfs is not None
    assert again.pdfs["r"].iterations == 2  # from the first bright image on
    for name in v.kept_tensors:
        np.testing.assert_array_equal(again.pdfs[name].pdf, fresh.pdfs[name].pdf)
        assert again.pdfs[name].x_left is not None
    # the dark images first, then the bright ones: nothing new runs
    assert cached.collect_data(raws, histograms=True).images_run == 0


@pytest.mark.parametrize(("nhwc", "opset"), [(False, 13), (True, 13), (False, 9)])
def test_evaluation_of_other_models(nhwc, opset, photos, tmp_path):
    """Every evaluation mode on a model with Gemm/MatMul, BN, ReLU6, NHWC input or an old opset:
    no decoder, so output-level metrics only; the layerwise copy of the first layer is the
    oneshot one, and every kept tensor gets every variant."""
    from pipeline.analysis import evaluate, runs, summary
    from pipeline.params import EvaluateParams

    m = small_model(nhwc, opset)
    v = analyze(prepare(m) if opset < 13 else m)
    tp = TensorsParams(height=32, width=32, layout="NCHW")
    raws = photo_raws(photos, tmp_path, tp, 4)
    enc = compute_encodings(
        v, Calibrator(v, tp, QuantizeParams()).collect_data(raws[:2]), QuantizeParams()
    )
    images = [
        runs.EvalImage(r, f"{s}/{r.name}", s)
        for r, s in zip(raws, ["day", "night"] * 2, strict=True)
    ]
    opts = runs.EvalOptions(decoder="none", sensitivity_layers=1)
    results = evaluate.run_evaluation(v, enc, images, tp, opts)
    assert sorted(results) == ["day", "night"]
    inner = [t for t in v.kept_tensors if t != v.input_name]
    for res in results.values():
        assert res.images == 2 and res.detections is None
        for variant in ("full", "weights_only", "activations_only"):
            assert set(res.layers[variant]) == set(v.kept_tensors)
        assert set(res.layers["layerwise"]) == set(inner)
        first = inner[0]
        assert res.layers["layerwise"][first].sqnr() == pytest.approx(
            res.layers["full"][first].sqnr(), abs=1e-6
        )
        assert 0 < res.layers["full"]["logits"].sqnr() < 200
    metrics, rows, _ = summary.summarize(v, results, EvaluateParams(sensitivity_layers=1))
    for scene, m_ in metrics.items():
        assert m_.worst_layer in inner and m_.worst_layer_dominant in (
            "weights",
            "activations",
        )
        assert m_.sensitivity is not None and len(m_.sensitivity) == 1 and m_.faces is None
        assert [r.layer for r in rows[scene]] == v.kept_tensors
    # the sweep's output SQNR follows evaluate.sqnr_signal, like every other SQNR reported
    by_signal = {
        sig: summary.summarize(v, results, EvaluateParams(sensitivity_layers=1, sqnr_signal=sig))[0]
        for sig in ("golden", "inference")
    }
    for scene, res in results.items():
        ((layer, kinds),) = res.sensitivity.items()
        for sig, ms in by_signal.items():
            point = ms[scene].sensitivity[layer]  # type: ignore[index]
            for kind, accs in kinds.items():
                assert getattr(point, kind) == min(accs[o].sqnr(sig) for o in v.outputs)
        assert by_signal["golden"][scene].sensitivity != by_signal["inference"][scene].sensitivity
