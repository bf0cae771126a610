"""Mixed 8/16-bit activations: the ops that run at 16 bits, the exact conversions at their
boundaries in the QDQ model, and the model running wholly on Qualcomm's HTP emulator as close
to float as onnxruntime's CPU on the same QDQ model and as fieldcal's simulation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import numpy_helper

from pipeline.backends.qnn_htp import HtpSession, input_shape
from pipeline.data.tensors import read_raw
from pipeline.graph.rewrite import with_outputs
from pipeline.graph.runtime import Runner
from pipeline.graph.view import analyze
from pipeline.params import TensorsParams
from pipeline.quantization.encoding import dequantize, quantize, tf_encoding
from pipeline.quantization.mixed import plan, widened
from pipeline.quantization.qdq import export_qdq
from pipeline.quantization.qdq_check import QParam, read_back, verify
from pipeline.quantization.simulate import build_quantized_model
from tests.qnn_models import TINY_TP, calibrated_raised, needs_htp, tiny_model

DEMO_TP = TensorsParams(height=64, width=96, layout="NCHW")
# the demo's search16_all_scenes remedy (out/remedies/encodings/all/, night of 2026-11-28)
DEMO_RAISED = ["373", "410", "537"]


@pytest.fixture(scope="module")
def tiny_view():
    return analyze(tiny_model())


@pytest.fixture(scope="module")
def rd16(tiny_view, photos, tmp_path_factory):
    """The small CNN with one tensor (the depthwise Conv+ReLU's ``rd``) at 16 bits."""
    enc, raws = calibrated_raised(tiny_view, photos, tmp_path_factory.mktemp("rd16"), ["rd"])
    return enc, raws


@given(
    lo=st.floats(-1e3, 0.0, allow_subnormal=False),
    width=st.floats(0.02, 1e3, allow_subnormal=False),
)
def test_widening_puts_every_8_bit_value_on_the_16_bit_grid(lo, width):
    e = tf_encoding(lo, lo + width, 8)
    w = widened(e)
    q8 = np.arange(256)
    real = dequantize(q8, e)
    np.testing.assert_array_equal(quantize(real, w), 257 * q8)
    np.testing.assert_allclose(dequantize(257 * q8, w), real, rtol=1e-12, atol=1e-12 * width)


def test_ops_between_8_and_16_bits_run_at_16(tiny_view, rd16):
    enc, _ = rd16
    mix = plan(tiny_view, enc)
    # rd's producer reads the 8-bit r1 widened; its consumer writes the 8-bit c3 widened first
    assert mix.wide_ops == ("cd", "c3")
    assert mix.reads == {"r1": frozenset({"cd"})}
    assert mix.writes == frozenset({"c3"})


@pytest.mark.parametrize("bits", [8, 16])
def test_one_bitwidth_needs_no_conversion(tiny_view, photos, tmp_path, bits):
    raised = list(tiny_view.kept_tensors) if bits == 16 else []
    enc, _ = calibrated_raised(tiny_view, photos, tmp_path, raised)
    assert plan(tiny_view, enc).wide_ops == ()
    ops = {n.op_type for n in export_qdq(tiny_view, enc).graph.node}
    assert ops == {n.op_type for n in tiny_model().graph.node} - {"BatchNormalization"} | {
        "QuantizeLinear",
        "DequantizeLinear",
    }


def test_conversions_carry_the_widened_encoding_and_read_back_exactly(tiny_view, rd16):
    enc, _ = rd16
    qdq = export_qdq(tiny_view, enc)
    read = read_back(qdq)
    assert verify(read, tiny_view, enc) == []
    for key, t in (("r1__r16", "r1"), ("c3__w16", "c3")):
        e = enc.activations[t]
        assert read[key] == [QParam(float(np.float32(e.scale / 257)), -257 * e.offset, "uint16")]
        assert read[t] == [QParam(float(np.float32(e.scale)), -e.offset, "uint8")]
    rd = enc.activations["rd"]
    assert read["rd"] == [QParam(float(np.float32(rd.scale)), -rd.offset, "uint16")]
    # every conversion is a DQ whose only consumer is a Q (the QNN EP fuses it into Convert)
    consumers: dict[str, list[str]] = {}
    for n in qdq.graph.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n.op_type)
    outputs = {o.name for o in qdq.graph.output}
    for n in qdq.graph.node:
        if n.op_type == "DequantizeLinear" and n.output[0] in ("r1__r16__from", "c3__w16"):
            assert consumers[n.output[0]] == ["QuantizeLinear"] and n.output[0] not in outputs


def test_bias_follows_the_input_scale_the_conv_receives(tiny_view, rd16):
    enc, _ = rd16
    qdq = export_qdq(tiny_view, enc)
    inits = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    op = next(o for o in tiny_view.weighted if o.node == "cd")  # reads r1 widened
    s_in = np.float32(enc.activations["r1"].scale / 257)
    s_w = np.asarray([e.scale for e in enc.weights[op.weight_name]], np.float32)
    np.testing.assert_array_equal(inits["bd__scale"], s_in * s_w)
    # the same real values as fieldcal's grid s_in(8-bit) x s_w: the integers x 257
    grid = np.asarray([e.scale for e in enc.biases["bd"]], np.float64)
    q8 = np.copysign(np.floor(np.abs(op.bias / grid) + 0.5), op.bias)
    np.testing.assert_array_equal(inits["bd__quantized"], (257 * q8).astype(np.int32))


def test_the_simulation_rounds_a_16_bit_ops_8_bit_output_twice(tiny_view, rd16):
    """c3 (8-bit, written by the 16-bit Conv reading rd) is rounded on its widened grid and
    then on its own, as the HTP's Convert does; that differs from one rounding only for values
    within 1/514 of a step from a half step."""
    enc, raws = rd16
    sim = Runner(with_outputs(build_quantized_model(tiny_view, enc), ["c3__f", "c3"]))
    out = sim.run(read_raw(raws[0], TINY_TP, "NCHW"), ["c3__f", "c3"])
    e = enc.activations["c3"]
    twice = dequantize(quantize(dequantize(quantize(out["c3__f"], widened(e)), widened(e)), e), e)
    once = dequantize(quantize(out["c3__f"], e), e)
    np.testing.assert_allclose(out["c3"], twice, rtol=0, atol=e.scale * 1e-4)
    t = np.clip(out["c3__f"], e.min, e.max) / e.scale - e.offset
    near_half = np.abs(t - np.floor(t) - 0.5) <= 1 / 514 + 1e-6
    assert np.all(near_half[twice != once])


def _sqnr_db(ref: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - y) ** 2.0)))


@needs_htp
@pytest.mark.parametrize("raised", [["rd"], ["c3"], ["heat"], ["image", "sum"]], ids=str)
def test_one_16_bit_tensor_among_8_bit_ones_runs_wholly_on_the_htp(
    tiny_view, photos, tmp_path, raised
):
    """Conv, Add, Sigmoid and the graph input at a 16-bit boundary; fallback disabled, so a
    node the HTP did not take would raise. The HTP lands as close to float as onnxruntime's CPU
    on the same QDQ model and as the simulation (the 1 dB of test_qnn_htp)."""
    enc, raws = calibrated_raised(tiny_view, photos, tmp_path, raised)
    qdq = export_qdq(tiny_view, enc)
    htp = HtpSession(qdq, input_shape(TINY_TP.height, TINY_TP.width, "NCHW"))
    cpu, sim = Runner(qdq), Runner(build_quantized_model(tiny_view, enc))
    flt = Runner(tiny_view.model)
    for r in raws:
        x = read_raw(r, TINY_TP, "NCHW")
        got, ref = htp.run(x), flt.run(x)
        on_cpu, simulated = cpu.run(x, ["heat", "boxes"]), sim.run(x, ["heat", "boxes"])
        for name in ("heat", "boxes"):
            on_htp = _sqnr_db(ref[name], got[name])
            assert abs(on_htp - _sqnr_db(ref[name], on_cpu[name])) < 1.0
            assert abs(on_htp - _sqnr_db(ref[name], simulated[name])) < 1.0


@needs_htp
def test_the_demos_mixed_remedy_runs_wholly_on_the_htp(centerface_view, photos, tmp_path):
    view = centerface_view
    enc, raws = calibrated_raised(view, photos, tmp_path, DEMO_RAISED, DEMO_TP)
    qdq = export_qdq(view, enc)
    assert verify(read_back(qdq), view, enc) == []
    assert plan(view, enc).wide_ops  # the remedy has 8/16-bit boundaries
    htp = HtpSession(qdq, input_shape(DEMO_TP.height, DEMO_TP.width, view.input_layout))
    cpu, flt = Runner(qdq), Runner(view.model)
    x = read_raw(raws[0], DEMO_TP, view.input_layout)
    got, on_cpu, ref = htp.run(x), cpu.run(x, ["537"]), flt.run(x, ["537"])
    assert abs(_sqnr_db(ref["537"], got["537"]) - _sqnr_db(ref["537"], on_cpu["537"])) < 1.0
