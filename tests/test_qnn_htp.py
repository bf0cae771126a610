"""The QNN HTP backend on Qualcomm's emulator: QDQ models run wholly on it, a node it does not
take is named, compiled context binaries reload and reproduce the QDQ session exactly."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.backends.qnn_compile import Target, compile_target, load_compiled
from pipeline.backends.qnn_htp import (
    HtpFallbackError,
    HtpSession,
    SessionConfig,
    input_shape,
    versions,
)
from pipeline.data.tensors import read_raw
from pipeline.graph.load import sha256_file
from pipeline.graph.runtime import Runner
from pipeline.graph.view import analyze
from pipeline.params import TensorsParams
from pipeline.quantization.qdq import export_qdq
from pipeline.quantization.simulate import build_quantized_model
from tests.qnn_models import TINY_TP, calibrated, needs_htp, tiny_model

pytestmark = needs_htp


@pytest.fixture(scope="module")
def tiny(photos, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    view = analyze(tiny_model())
    enc, raws = calibrated(view, photos, folder)
    path = folder / "model.qdq.onnx"
    onnx.save(export_qdq(view, enc), str(path))
    images = [read_raw(r, TINY_TP, view.input_layout) for r in raws]
    return view, enc, path, images


def test_versions_are_read():
    v = versions()
    assert v.onnxruntime and v.onnxruntime_qnn and v.qairt != "unknown"
    assert v.qnn_core_api != "unknown" and v.qnn_htp_api != "unknown"


def _sqnr_db(ref: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - y) ** 2.0)))


def test_qdq_model_runs_wholly_on_the_htp_as_close_to_float_as_the_simulation(tiny):
    view, enc, path, images = tiny
    htp = HtpSession(path, input_shape(TINY_TP.height, TINY_TP.width, "NCHW"))
    sim, flt = Runner(build_quantized_model(view, enc)), Runner(view.model)
    for x in images:
        got, want, ref = htp.run(x), sim.run(x, ["heat", "boxes"]), flt.run(x)
        for name in ("heat", "boxes"):
            assert abs(_sqnr_db(ref[name], got[name]) - _sqnr_db(ref[name], want[name])) < 1.0


def test_a_node_the_htp_does_not_take_is_named():
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    z = numpy_helper.from_array(np.array(128, np.uint8), "z")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
        helper.make_node("Det", ["d"], ["y"], name="the_det"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [s, z],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(
        HtpFallbackError, match=r"(?s)does not run wholly on the HTP.*Det 'the_det'"
    ):
        HtpSession(m)


def test_missing_extra_names_the_install_command(tmp_path):
    code = (
        "import sys; sys.modules['onnxruntime_qnn'] = None\n"
        "from pipeline.backends.qnn_htp import versions\n"
        "from pipeline.errors import PipelineError\n"
        "try:\n    versions()\nexcept PipelineError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'fieldcal[qnn]'" in out.stdout


@pytest.mark.parametrize("target", [Target(), Target(soc_model=60)], ids=lambda t: t.name)
def test_compiled_context_reproduces_the_qdq_session(tiny, tmp_path, target):
    _, _, path, images = tiny
    shape = input_shape(TINY_TP.height, TINY_TP.width, "NCHW")
    done = compile_target(path, tmp_path / target.name, target, shape)
    assert "EPContext" in {n.op_type for n in onnx.load(str(done.model)).graph.node}
    manifest = json.loads(done.manifest.read_text(encoding="utf-8"))
    assert manifest["versions"] == versions().as_dict()
    assert manifest["source"]["sha256"] == sha256_file(path)
    assert set(manifest["files"]) == {done.model.name, *(b.name for b in done.binaries)}
    assert all(manifest["files"][f.name] == sha256_file(f) for f in (done.model, *done.binaries))
    qdq = HtpSession(path, shape, SessionConfig(target.provider_options()))  # same target
    ctx = load_compiled(done.model, target)
    for x in images:
        a, b = qdq.run(x), ctx.run(x)
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])


def test_demo_model_runs_and_compiles_at_reduced_resolution(centerface_view, photos, tmp_path):
    tp = TensorsParams(height=64, width=96, layout="NCHW")
    enc, raws = calibrated(centerface_view, photos, tmp_path, tp)
    path = tmp_path / "model.qdq.onnx"
    onnx.save(export_qdq(centerface_view, enc), str(path))
    shape = input_shape(tp.height, tp.width, centerface_view.input_layout)
    done = compile_target(path, tmp_path / "soc60", Target(soc_model=60), shape)
    soc60 = Target(soc_model=60)
    qdq = HtpSession(path, shape, SessionConfig(soc60.provider_options()))
    ctx = load_compiled(done.model, soc60)
    x = read_raw(raws[0], tp, centerface_view.input_layout)
    a, b = qdq.run(x), ctx.run(x)
    for name in centerface_view.outputs:
        np.testing.assert_array_equal(a[name], b[name])
