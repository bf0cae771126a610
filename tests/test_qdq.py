"""QDQ export: every scale and zero point read back from the QDQ model equals encodings.json,
tensor by tensor, none missing, on the demo model and on a small one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView, analyze
from pipeline.params import TensorsParams
from pipeline.quantization import encodings_json
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.qdq import QdqExportError, count_bias_disagreements, export_qdq
from pipeline.quantization.qdq_check import QParam, read_back, verify
from pipeline.quantization.simulate import build_quantized_model
from tests.qnn_models import calibrated, tiny_model

DEMO_TP = TensorsParams(height=64, width=96, layout="NCHW")


def _json_expectations(doc: dict, view: ModelView) -> dict[str, list[QParam]]:
    """What the QDQ model must carry, read straight from the encodings.json document: scale as
    float32, zero point = -offset (activations, asymmetric weights) or 0 (symmetric weights,
    int32 biases, whose scale is float32(s_in) * float32(s_w))."""
    acts = {e["name"]: e for e in doc["activation_encodings"]}
    params = {e["name"]: e for e in doc["param_encodings"]}
    want: dict[str, list[QParam]] = {}
    for name, e in acts.items():
        dt = f"uint{e['bw']}"
        want[name] = [QParam(float(np.float32(e["scale"][0])), -e["offset"][0], dt)]
    for op in view.weighted:
        w = params[op.weight_name]
        signed = w["is_sym"] and set(w["offset"]) == {-(1 << (w["bw"] - 1))}
        want[op.weight_name] = [
            QParam(
                float(np.float32(s)),
                0 if signed else -o,
                ("int" if signed else "uint") + str(w["bw"]),
            )
            for s, o in zip(w["scale"], w["offset"], strict=True)
        ]
        if op.bias_name:
            s_in = np.float32(acts[op.input]["scale"][0])
            n = len(params[op.bias_name]["scale"])
            s_w = np.broadcast_to(np.asarray(w["scale"], np.float32), (n,))
            want[op.bias_name] = [QParam(float(s_in * s), 0, "int32") for s in s_w]
    return want


def _round_trip(enc: Encodings, view: ModelView, tmp_path: Path) -> tuple[dict, Encodings]:
    path = tmp_path / "encodings.json"
    path.write_text(json.dumps(encodings_json.to_1_0_0(enc, {})), encoding="utf-8")
    doc = json.loads(path.read_text(encoding="utf-8"))
    return doc, encodings_json.for_model(encodings_json.read(path), view, path)


@pytest.fixture(scope="module")
def demo(centerface_view, photos, tmp_path_factory):
    enc, _ = calibrated(centerface_view, photos, tmp_path_factory.mktemp("cal"), DEMO_TP)
    return centerface_view, enc


@pytest.fixture(scope="module")
def tiny(photos, tmp_path_factory):
    view = analyze(tiny_model())
    enc, _ = calibrated(view, photos, tmp_path_factory.mktemp("cal"))
    return view, enc


@pytest.mark.parametrize("which", ["demo", "tiny"])
def test_every_scale_and_zero_point_equals_encodings_json(which, request, tmp_path):
    view, enc = request.getfixturevalue(which)
    doc, loaded = _round_trip(enc, view, tmp_path)
    qdq = export_qdq(view, loaded)
    read = read_back(qdq)
    want = _json_expectations(doc, view)
    assert sorted(read) == sorted(want)  # none missing, nothing extra
    for name in want:
        assert read[name] == want[name], name
    assert verify(read, view, loaded) == []
    # integers the float32 scale product alone would round differently (a handful of ~1,700)
    n_bias = sum(op.bias.size for op in view.weighted if op.bias_name)
    assert count_bias_disagreements(view, loaded) <= 0.005 * n_bias
    ops = {n.op_type for n in qdq.graph.node}
    assert "BatchNormalization" not in ops


def test_weights_int8_per_channel_on_the_conv_axis_and_biases_int32(tiny):
    view, enc = tiny
    qdq = export_qdq(view, enc)
    read = read_back(qdq)
    axes = {
        n.output[0]: next((a.i for a in n.attribute if a.name == "axis"), None)
        for n in qdq.graph.node
        if n.op_type == "DequantizeLinear"
    }
    for op in view.weighted:
        assert {(q.dtype, q.zero_point) for q in read[op.weight_name]} == {("int8", 0)}
        assert {(q.dtype, q.zero_point) for q in read[op.bias_name]} == {("int32", 0)}
        channels = op.weight.shape[op.axis]
        want_axis = None if channels == 1 else (1 if op.op_type == "ConvTranspose" else 0)
        assert axes[op.weight_name] == want_axis, op.node


def test_sixteen_bit_activations_are_uint16(tiny):
    view, enc = tiny
    wide = Encodings({t: _widen(e) for t, e in enc.activations.items()}, enc.weights, enc.biases)
    read = read_back(export_qdq(view, wide))
    assert {read[t][0].dtype for t in wide.activations} == {"uint16"}
    with pytest.raises(QdqExportError, match="opset >= 21"):
        export_qdq(view, wide, opset=13)


def _widen(e):
    from pipeline.quantization.encoding import tf_encoding

    return tf_encoding(e.min, e.max, 16)


def test_eight_bit_bias_is_refused_with_the_fix(tiny):
    view, enc = tiny
    from pipeline.quantization.encoding import tf_encoding

    biases = {n: [tf_encoding(-1.0, 1.0, 8)] for n in enc.biases}
    with pytest.raises(QdqExportError, match="bias_bitwidth: 32"):
        export_qdq(view, Encodings(enc.activations, enc.weights, biases))


def test_export_is_deterministic_and_close_to_the_simulation(tiny, photos, tmp_path):
    view, enc = tiny
    a, b = export_qdq(view, enc), export_qdq(view, enc)
    assert a.SerializeToString() == b.SerializeToString()
    import onnxruntime as ort

    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 32, 48)).astype(np.float32)
    cpu = ort.InferenceSession(a.SerializeToString(), providers=["CPUExecutionProvider"])
    got = cpu.run(["heat"], {"image": x})[0]
    sim = Runner(build_quantized_model(view, enc)).run(x, ["heat"])["heat"]
    step = enc.activations["heat"].scale
    assert np.abs(got - sim).max() <= 8 * step
    onnx.checker.check_model(a)
