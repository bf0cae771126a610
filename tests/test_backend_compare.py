"""Evaluation on the HTP beside the embedded simulation: per scene, output and layer, cached."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from pipeline.analysis.artifacts import BackendComparison, MetricsDocument
from pipeline.analysis.backend_compare import HtpRun, evaluate_htp, step_counts
from pipeline.analysis.runs import EvalImage
from pipeline.backends.base import Backend, QuantizedModel, run_many
from pipeline.backends.embedded import EmbeddedBackend
from pipeline.backends.htp_runner import HtpBackend, HtpConfig, compact, dequantize
from pipeline.backends.qnn_htp import HtpSession, input_shape, versions
from pipeline.data.tensors import read_raw
from pipeline.graph.view import analyze
from pipeline.params import EvaluateParams
from pipeline.quantization.encoding import tf_encoding
from pipeline.quantization.qdq import export_qdq
from tests.qnn_models import TINY_TP, calibrated, needs_htp, tiny_model


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [([0.0, 0.1, 0.2, 0.3], [0.0, 0.1, 0.3, 0.6], [2, 1, 1]), ([1.0], [1.0], [1, 0, 0])],
)
def test_step_counts(a, b, want):
    e = tf_encoding(0.0, 25.5)  # scale 0.1
    got = step_counts(np.array(a, np.float32), np.array(b, np.float32), e)
    assert got.tolist() == want


def test_compact_storage_dequantizes_exactly_or_keeps_the_float():
    grid = (np.float32(0.0137), 3, "uint8")
    ints = np.arange(256, dtype=np.uint8).reshape(16, 16)
    x = dequantize(ints, grid)
    stored = compact({"t": x, "u": x + np.float32(1e-3), "free": x}, {"t": grid, "u": grid})
    assert stored["q:t"].dtype == np.uint8 and np.array_equal(stored["q:t"], ints)
    assert "f:u" in stored and "f:free" in stored  # off the grid: stored as it is


def test_embedded_backend_runs_many_through_the_seam(photos, tmp_path):
    view = analyze(tiny_model())
    enc, raws = calibrated(view, photos, tmp_path)
    model = EmbeddedBackend().prepare(view, enc, ["heat", "c3"])
    xs = [read_raw(r, TINY_TP, "NCHW") for r in raws[:2]]
    a, b = run_many(model, xs, lambda n: None)
    assert set(a) == {"heat", "c3"}
    assert not np.array_equal(a["heat"], b["heat"])  # copies, not views of one buffer


@needs_htp
def test_scenes_and_layers_on_the_htp_name_backend_and_versions_and_are_cached(photos, tmp_path):
    view = analyze(tiny_model())
    enc, raws = calibrated(view, photos, tmp_path)
    qdq_path = tmp_path / "model.qdq.onnx"
    onnx.save(export_qdq(view, enc), str(qdq_path))
    images = [EvalImage(r, f"img{i}.jpg", "day" if i else "night") for i, r in enumerate(raws)]
    ep = EvaluateParams(outputs=("heat",))
    run = HtpRun(qdq_path, tmp_path / "cache", 1, "half_away", "none")
    first = evaluate_htp(view, enc, images, TINY_TP, ep, run)
    doc = first.to_json()
    assert doc["backend"] == "qnn-htp" and doc["versions"] == versions().as_dict()
    assert sorted(doc["scenes"]) == ["day", "night"]
    day = doc["scenes"]["day"]
    assert day["images"] == 2 and set(day["outputs"]) == {"heat", "boxes"}
    heat = day["outputs"]["heat"]
    shares = heat["backend_vs_embedded"]
    assert shares["steps_0"] + shares["steps_1"] + shares["steps_more"] == pytest.approx(1.0)
    assert shares["steps_0"] > 0.5 and heat["float_vs_backend"]["sqnr_db"] > 20
    assert day["verdicts_agree"] == (day["embedded"]["passed"] == day["backend"]["passed"])
    # every kept tensor but the input, in topological order, mostly on the same step
    kept = [t for t in view.kept_tensors if t != view.input_name]
    assert [r.layer for r in first.layers] == kept
    assert all(r.equal > 0.5 and r.sqnr_db > 10 for r in first.layers)
    # typed through metrics.json: MetricsDocument.backends reads it back
    assert BackendComparison.model_validate(doc) == first
    assert "backends" in MetricsDocument.model_fields
    assert len(list((tmp_path / "cache" / "htp").glob("*.npz"))) == 3
    again = evaluate_htp(view, enc, images, TINY_TP, ep, run)  # all from the cache
    assert again.to_json() == doc


@needs_htp
def test_htp_backend_implements_the_seam_and_extra_outputs_change_nothing(photos, tmp_path):
    view = analyze(tiny_model())
    enc, raws = calibrated(view, photos, tmp_path)
    shape = input_shape(TINY_TP.height, TINY_TP.width, "NCHW")
    backend: Backend = HtpBackend(HtpConfig(shape))
    model: QuantizedModel = backend.prepare(view, enc, ["c3", "sum", "heat"])
    assert backend.provenance().backend == "qnn-htp"
    plain = HtpSession(export_qdq(view, enc), shape)
    for r in raws[:2]:
        x = read_raw(r, TINY_TP, "NCHW")
        got, want = model.run(x), plain.run(x)
        assert set(got) == {"heat", "boxes", "c3", "sum"}
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
