"""The embedded simulation with the HTP's Conv and Add arithmetic (docs §8.5) against the emulator."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.analysis.evaluate import OneshotScorer
from pipeline.analysis.runs import EvalOptions
from pipeline.backends.htp_runner import HtpBackend, HtpConfig
from pipeline.backends.qnn_htp import input_shape
from pipeline.data.tensors import read_raw
from pipeline.graph.rewrite import teacher_forced
from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView, analyze
from pipeline.params import EvaluateParams
from pipeline.quantization.encoding import Encoding
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.htp_add import add, factors
from pipeline.quantization.htp_requant import multiplier, post_shift, requantize, shift_bits
from pipeline.quantization.qdq import export_qdq
from pipeline.quantization.simulate import Requant, SimOptions, build_quantized_model
from tests.qnn_models import TINY_TP, calibrated, needs_htp, tiny_model


@pytest.mark.parametrize(
    ("m", "k"), [(0.1, 0), (1 / 8, 0), (1 / 16, 1), (1 / 17, 1), (0.001, 6), (2.0, 0)]
)
def test_shift_brings_the_multiplier_above_a_sixteenth_up_to_an_eighth(m, k):
    assert shift_bits(m) == k
    assert shift_bits(m, strided_depthwise=True) == 0
    if k:
        assert 1 / 16 < m * 2**k <= 1 / 8


def test_multiplier_bits_are_eleven_after_the_shift_and_fifteen_for_strided_depthwise():
    for m in (0.1, 0.01, 0.00395, 0.0007):
        k, s = shift_bits(m), post_shift(m)
        assert 2**10 < round(m * 2 ** (k + s)) <= 2**11
        s2 = post_shift(m, strided_depthwise=True)
        assert 2**14 <= round(m * 2**s2) <= 2**15


def test_zero_point_is_folded_into_the_accumulator_before_the_floor():
    """M = 0.00395 (k = 4), zero point 127: the reference rounds -106 M + 127 = 126.58 up to
    127; the HTP floors (-106 + round(127 / M)) / 16 first and lands on 126."""
    acc = np.array([-106, 0, 100000, -100000])
    assert requantize(acc, 0.00395, 127, 255).tolist() == [126, 127, 255, 0]


def test_add_rescales_with_13_fractional_bits_and_the_zero_points_to_5():
    """s_a / s_o = 0.845 and s_b / s_o = 0.7035 become 6922 / 2^13 and 5763 / 2^13, and the
    folded zero points -71.1646 become -2277 / 2^5: 0.845 (0 - 144) + 0.7035 (190 - 140) + 149
    = 62.495 rounds to 62, the HTP gives 63."""
    a, b, out = _enc(0.845, -144), _enc(0.7035, -140), _enc(1.0, -149)
    assert factors(a, b, out) == (6922, 5763, -2277 * 2**8 + 2**12)
    assert add(0, 190, a, b, out) == 63
    assert add(255, 255, a, b, out) == 255 and add(0, 0, a, b, out) == 0


def _enc(scale: float, offset: int) -> Encoding:
    return Encoding(8, scale, offset, scale * offset, scale * (offset + 255), False)


def test_the_params_key_selects_the_rule_and_refuses_others():
    assert EvaluateParams().simulation == "htp"  # what the car's HTP computes, by default
    assert EvaluateParams(simulation="reference").simulation == "reference"
    with pytest.raises(ValueError, match="simulation"):
        EvaluateParams.model_validate({"simulation": "exact"})


def _teacher_forced(view: ModelView, enc: Encodings, mode: Requant, kept: list[str]) -> Runner:
    """The simulation with every consumer of a kept tensor reading graph input ``<t>__in``
    (fed the HTP's value), so each group is judged on the HTP's own inputs."""
    return Runner(teacher_forced(build_quantized_model(view, enc, SimOptions(requant=mode)), kept))


@needs_htp
def test_htp_requant_matches_the_emulator_on_every_conv_group_and_add(photos, tmp_path):
    """Teacher-forced, every Conv group of the small model after the first (depthwise
    Conv+ReLU, Conv without ReLU at a nonzero zero point, ConvTranspose+ReLU, the heads) and
    its Add give the HTP's integers with ``requant="htp"``; the reference misses some."""
    view = analyze(tiny_model())
    enc, raws = calibrated(view, photos, tmp_path)
    # the first Conv, on the image at input scale 78/85 (1 on the demo), is 99.2 % equal with
    # either rule and stays unexplained (docs §8.5): rounding the image half to even fits worse
    groups = [op.output for op in view.weighted if op.input != view.input_name] + ["sum"]
    kept = [t for t in view.kept_tensors if t in enc.activations and t != view.input_name]
    shape = input_shape(TINY_TP.height, TINY_TP.width, "NCHW")
    htp = HtpBackend(HtpConfig(shape)).prepare(view, enc, kept)
    sims = {mode: _teacher_forced(view, enc, mode, kept) for mode in ("reference", "htp")}
    equal = {mode: dict.fromkeys(groups, 0) for mode in sims}
    total = dict.fromkeys(groups, 0)
    for r in raws:
        x = read_raw(r, TINY_TP, "NCHW")
        want = htp.run(x)
        feed = {view.input_name: x, **{f"{t}__in": want[t] for t in kept}}
        for mode, sim in sims.items():
            got = dict(zip(kept, sim.session.run(kept, feed), strict=True))
            for t in groups:
                scale = enc.activations[t].scale
                same = np.rint(got[t] / scale) == np.rint(want[t] / scale)
                equal[mode][t] += int(np.count_nonzero(same))
                total[t] += same.size if mode == "htp" else 0
    share = {m: {t: equal[m][t] / total[t] for t in groups} for m in sims}
    assert min(share["htp"].values()) >= 0.999, share
    assert sum(share["htp"].values()) > sum(share["reference"].values()), share


def test_the_key_reaches_every_embedded_simulation(photos, tmp_path):
    """``evaluate.simulation`` reaches the evaluation options and the one-shot scorer; a layer
    left in float keeps the reference rounding for itself and for what reads it."""
    view = analyze(tiny_model())
    assert EvalOptions(requant="htp").simulation().requant == "htp"
    assert OneshotScorer(view, TINY_TP, EvaluateParams(simulation="htp")).options().requant == "htp"
    enc, _ = calibrated(view, photos, tmp_path)

    def chains(options: SimOptions) -> set[str]:
        model = build_quantized_model(view, enc, options)
        return {o for n in model.graph.node for o in n.output if "__htp" in o and o.endswith("_y")}

    assert chains(SimOptions()) == set()
    every = chains(SimOptions(requant="htp"))
    assert {"bn1__htp_y", "cd__htp_y", "c3__htp_y", "ct__htp_y"} <= every
    assert "cd__htp_y" not in chains(SimOptions(requant="htp", float_layers=frozenset({"r1"})))
    adds = build_quantized_model(view, enc, SimOptions(requant="htp")).graph.node
    assert not any(n.op_type == "Add" and n.output[0] == "sum__f" for n in adds)


def _depthwise_model(stride: int) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array((rng.normal(size=(3, 1, 3, 3)) * 0.3).astype(np.float32), "w")
    b = numpy_helper.from_array((rng.normal(size=3) * 2).astype(np.float32), "b")
    conv = helper.make_node(
        "Conv", ["image", "w", "b"], ["dw"], group=3, pads=[1, 1, 1, 1], strides=[stride] * 2
    )
    shape = ["N", 3, "H", "W"]
    g = helper.make_graph(
        [conv],
        "dw",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("dw", TensorProto.FLOAT, shape)],
        [w, b],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("stride", [1, 2])
def test_the_graph_chain_computes_the_integer_rule(photos, tmp_path, stride):
    """The simulation graph's chain (float32 for stride 1, float64 for the strided depthwise
    Conv's 15-bit multiplier) gives exactly :func:`requantize` of the exact accumulators."""
    view = analyze(_depthwise_model(stride))
    enc, raws = calibrated(view, photos, tmp_path)
    qdq = {i.name: numpy_helper.to_array(i) for i in export_qdq(view, enc).graph.initializer}
    w = qdq["w__quantized"].astype(np.float64)
    bias = qdq["b__quantized"].astype(np.int64)
    e_in, e_out = enc.activations["image"], enc.activations["dw"]
    sim = Runner(build_quantized_model(view, enc, SimOptions(requant="htp")))
    for r in raws:
        x = read_raw(r, TINY_TP, "NCHW")
        qx = np.floor(
            np.clip(x, 0, np.float32(e_in.max)) / np.float32(e_in.scale) + np.float32(0.5)
        )
        padded = np.pad(qx[0].astype(np.float64) + e_in.offset, ((0, 0), (1, 1), (1, 1)))
        got = np.rint(sim.run(x, ["dw"])["dw"][0] / e_out.scale - e_out.offset).astype(np.int64)
        for c in range(3):
            win = np.lib.stride_tricks.sliding_window_view(padded[c], (3, 3))[::stride, ::stride]
            acc = np.einsum("hwij,ij->hw", win, w[c, 0]).astype(np.int64) + bias[c]
            m = multiplier(e_in.scale, enc.weights["w"][c].scale, e_out.scale)
            want = requantize(acc, m, -e_out.offset, 255, strided_depthwise=stride > 1)
            assert np.array_equal(got[c], want), (c, np.count_nonzero(got[c] != want))
