"""The demo model as QNN sees it, and the simulation running on real onnxruntime."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from pipeline.calibration.collect import Calibrator
from pipeline.calibration.encodings import compute_encodings
from pipeline.calibration.record import calibration_record
from pipeline.calibration.statistics import Statistics
from pipeline.data.tensors import preprocess
from pipeline.errors import ModelError, NoStatisticsError
from pipeline.graph.load import load, load_view
from pipeline.graph.rewrite import with_outputs
from pipeline.graph.runtime import Runner
from pipeline.graph.view import analyze, check_input_spec
from pipeline.params import QuantizeParams, TensorsParams
from pipeline.quantization.encoding import dequantize, quantize, tf_encoding
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.simulate import SimOptions, build_quantized_model
from tests.graphs import model_of, view_of
from tests.photos import photo_raws

SMALL = TensorsParams(height=64, width=96)


def test_prepare_keeps_outputs_identical(centerface_original, centerface):
    x = np.random.default_rng(0).uniform(0, 255, (10, 3, 32, 32)).astype(np.float32)
    orig = Runner(onnx.load(str(centerface_original))).run(x)
    prep = Runner(onnx.load(str(centerface))).run(x)
    for name in orig:  # same math; kernels for dynamic shapes may differ in the last ulp
        np.testing.assert_allclose(orig[name], prep[name], rtol=1e-4, atol=1e-6)


def test_prepared_model_is_dynamic_and_opset_13(centerface):
    m = onnx.load(str(centerface))
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 13
    assert len(m.graph.input) == 1
    out = Runner(m).run(np.zeros((2, 3, 64, 96), np.float32))
    assert out["537"].shape == (2, 1, 16, 24)


def test_the_input_asked_back_outlives_the_callers_array(centerface_view):
    """Evaluation asks for the input as a kept tensor and drops its own array; the returned
    input must not borrow freed memory (it did: onnxruntime's value only aliases the feed)."""
    view = centerface_view
    runner = Runner(with_outputs(view.model, [view.input_name]))
    rng = np.random.default_rng(0)
    want = rng.uniform(0, 255, (1, 3, 64, 96)).astype(np.float32)
    got = runner.run(want.copy(), [view.input_name, view.outputs[0]])[view.input_name]
    junk = [np.full_like(want, -7.0) for _ in range(64)]  # reuse whatever was freed
    np.testing.assert_array_equal(got, want)
    del junk


def test_view_of_centerface(centerface_view):
    v = centerface_view
    assert v.input_name == "input.1"
    assert len(v.all_tensors) == 123  # input + 122 node outputs
    assert len(v.kept_tensors) == 78  # input + the 77 tensors QNN keeps after fusion
    assert sum(op.folded_bn is not None for op in v.weighted) == 3
    assert {op.op_type for op in v.weighted} == {"Conv", "ConvTranspose"}
    # a Conv followed only by a ReLU is fused: its output is not kept
    assert "363" not in v.kept_tensors and "365" in v.kept_tensors
    assert v.fused_into["363"] == "365"


def test_input_spec_mismatch_fails_with_both_shapes(centerface_original):
    view = analyze(load(centerface_original))  # fixed [10, 3, 32, 32]
    with pytest.raises(ModelError, match=r"\[10, 3, 32, 32\].*\['?10'?, 3, 256, 320\]"):
        check_input_spec(view, 256, 320)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load(tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        load(tmp_path / "junk.onnx")


def test_external_data_outside_model_folder_is_refused(tmp_path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    w.data_location = TensorProto.EXTERNAL
    del w.float_data[:]
    entry = w.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    m = model_of([helper.make_node("Add", ["x", "w"], ["y"])], [w], shape=[1])
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    with pytest.raises(ModelError, match="outside the model's folder"):
        load(path)


def _image_input(photos, tp: TensorsParams, i: int = 0) -> np.ndarray:
    x = preprocess(Image.open(photos[i]), tp)
    return x.transpose(0, 3, 1, 2) if tp.layout == "NHWC" else x  # (1,H,W,C) -> (1,C,H,W)


def test_bn_folding_without_quantization_is_the_float_model(centerface_view, photos):
    tp = TensorsParams(height=128, width=160)
    x = _image_input(photos, tp)
    enc = Encodings({}, {}, {})
    folded = build_quantized_model(
        centerface_view, enc, SimOptions(quantize_weights=False, quantize_activations=False)
    )
    ref = Runner(centerface_view.model).run(x)
    got = Runner(folded).run(x)
    for name in centerface_view.outputs:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("mode", ["half_away", "half_even"])
def test_activation_fake_quant_matches_numpy(mode):
    view = view_of([helper.make_node("Relu", ["x"], ["y"])])
    e = tf_encoding(-1.0, 3.0)
    enc = Encodings({"x": e, "y": tf_encoding(0.0, 2.0)}, {}, {})
    x = np.random.default_rng(1).uniform(-2, 4, (1, 3, 8, 8)).astype(np.float32)
    got = Runner(build_quantized_model(view, enc, SimOptions(round_mode=mode)), "basic").run(x)
    xq = dequantize(quantize(x, e, mode), e)
    want = dequantize(quantize(np.maximum(xq, 0), enc.activations["y"], mode), enc.activations["y"])
    np.testing.assert_allclose(got["y"], want, atol=1e-6)


def test_calibration_cache_reruns_only_new_images(centerface_view, photos, tmp_path):
    tp = SMALL
    raws = photo_raws(photos, tmp_path, tp)
    cache = tmp_path / "cache"
    cached = Calibrator(centerface_view, tp, QuantizeParams(), cache)
    first = cached.collect_data(raws[:2])
    assert (first.images_run, first.images_cached) == (2, 0)
    second = cached.collect_data(raws)
    assert (second.images_run, second.images_cached) == (1, 2)
    fresh = Calibrator(centerface_view, tp, QuantizeParams()).collect_data(raws)
    np.testing.assert_array_equal(second.minmax.mins, fresh.minmax.mins)
    np.testing.assert_array_equal(second.minmax.maxs, fresh.minmax.maxs)
    enc = compute_encodings(centerface_view, fresh, QuantizeParams())
    assert set(enc.activations) == set(centerface_view.kept_tensors)
    conv_weights = {op.weight_name for op in centerface_view.weighted}
    assert set(enc.weights) == conv_weights
    # per-channel symmetric weights: one encoding per output channel, offset -128
    op = centerface_view.weighted[0]
    assert len(enc.weights[op.weight_name]) == op.weight.shape[op.axis]
    assert {e.offset for e in enc.weights[op.weight_name]} == {-128}


def test_histogram_statistics_cached_equal_fresh(centerface_view, photos, tmp_path):
    """enhanced/percentile: with the first image unchanged, adding one runs the model only on it
    and the PDFs equal a fresh run over the same ordered set, bit for bit."""
    tp = SMALL
    raws = photo_raws(photos, tmp_path, tp)
    cache = tmp_path / "cache"
    cached = Calibrator(centerface_view, tp, QuantizeParams(), cache)
    cached.collect_data(raws[:2], histograms=True)
    again = cached.collect_data(raws, histograms=True)
    assert (again.images_run, again.images_cached) == (1, 2)  # min/max and histograms in one run
    fresh = Calibrator(centerface_view, tp, QuantizeParams()).collect_data(raws, histograms=True)
    assert again.pdfs is not None and fresh.pdfs is not None
    for name in centerface_view.kept_tensors:
        np.testing.assert_array_equal(again.pdfs[name].pdf, fresh.pdfs[name].pdf)
    # a new first image changes every support: all images are binned again (two passes)
    shuffled = cached.collect_data(raws[::-1], histograms=True)
    assert shuffled.images_run == 3
    for mode in ("enhanced", "percentile"):
        qp = QuantizeParams(activations={"mode": mode})
        a = compute_encodings(centerface_view, again, qp).activations
        b = compute_encodings(centerface_view, fresh, qp).activations
        assert a == b


def test_empty_calibration_set_is_a_clear_error(centerface_view, tmp_path):
    empty = Calibrator(centerface_view, TensorsParams(), QuantizeParams()).collect_data([])
    with pytest.raises(NoStatisticsError, match="calibration set is empty"):
        compute_encodings(centerface_view, empty, QuantizeParams())


def test_in_graph_ranges_equal_exact_statistics(centerface_view, photos, tmp_path):
    """tf/symmetric ranges come from reductions inside onnxruntime, with a ReLU output's min
    taken as 0; the histogram path measures exact min/max from the activations. Maxima (and
    minima where measured) agree exactly, and so does every tf and symmetric encoding."""
    tp = SMALL
    raws = photo_raws(photos, tmp_path, tp)
    view = centerface_view
    ranges = Calibrator(view, tp, QuantizeParams()).collect_data(raws)
    exact = Calibrator(view, tp, QuantizeParams()).collect_data(raws, histograms=True)
    assert view.nonnegative and view.nonnegative < set(view.kept_tensors)
    np.testing.assert_array_equal(ranges.per_image[:, 1], exact.per_image[:, 1])
    for t, name in enumerate(view.kept_tensors):
        if name in view.nonnegative:
            assert (ranges.per_image[:, 0, t] == 0).all() and (exact.per_image[:, 0, t] >= 0).all()
        else:
            np.testing.assert_array_equal(ranges.per_image[:, 0, t], exact.per_image[:, 0, t])
    for mode in ("tf", "symmetric"):
        qp = QuantizeParams(activations={"mode": mode})
        a = compute_encodings(view, ranges, qp).activations
        b = compute_encodings(view, exact, qp).activations
        assert a == b


def test_ranges_do_not_depend_on_which_cache_entries_serve(centerface_view, photos, tmp_path):
    """After a histogram run cached exact min/max, a tf run reads those entries instead of
    running the model; its statistics must be the same bytes as a fresh tf run's (a ReLU's
    min is 0 either way; zeros carry no sign), or outputs would change with cache history."""
    tp = SMALL
    raws = photo_raws(photos, tmp_path, tp)
    view = centerface_view
    cache = tmp_path / "cache"
    cached = Calibrator(view, tp, QuantizeParams(), cache)
    cached.collect_data(raws, histograms=True)
    served = cached.collect_data(raws)
    fresh = Calibrator(view, tp, QuantizeParams()).collect_data(raws)
    assert served.images_run == 0
    assert served.per_image.tobytes() == fresh.per_image.tobytes()
    assert calibration_record(view, served) == calibration_record(view, fresh)


@pytest.mark.parametrize("histograms", [False, True])
def test_batched_calibration_equals_one_image_at_a_time(
    centerface_view, photos, tmp_path, histograms
):
    tp = SMALL
    raws = photo_raws(photos, tmp_path, tp)

    def run(batch_size: int) -> Statistics:
        cal = Calibrator(centerface_view, tp, QuantizeParams(batch_size=batch_size))
        return cal.collect_data(raws, histograms=histograms)

    one, two = run(1), run(2)
    np.testing.assert_array_equal(one.per_image, two.per_image)
    if histograms:
        assert one.pdfs is not None and two.pdfs is not None
        for name in centerface_view.kept_tensors:
            np.testing.assert_array_equal(one.pdfs[name].pdf, two.pdfs[name].pdf)


def test_load_view_carries_the_files_sha256(centerface):
    view = load_view(centerface)
    assert view.sha256 == hashlib.sha256(centerface.read_bytes()).hexdigest()
    assert analyze(load(centerface)).sha256 == ""  # a view built in memory has none


def test_a_statistics_cache_needs_the_models_hash(tmp_path):
    view = view_of([helper.make_node("Relu", ["x"], ["y"])])
    with pytest.raises(ValueError, match="keyed by the model's sha256"):
        Calibrator(view, SMALL, QuantizeParams(), tmp_path / "cache")
