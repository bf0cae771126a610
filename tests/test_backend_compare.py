"""Evaluation on the HTP beside the embedded simulation: per scene and output, cached per image."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from pipeline.analysis.backend_compare import HtpRun, StepShares, evaluate_htp, step_counts
from pipeline.analysis.evaluate import EvalImage
from pipeline.backends.qnn_htp import versions
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


@needs_htp
def test_scenes_on_the_htp_name_backend_and_versions_and_are_cached(photos, tmp_path):
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
    assert isinstance(first.scenes[0].outputs[0].steps, StepShares)
    assert len(list((tmp_path / "cache" / "htp").glob("*.npz"))) == 3
    again = evaluate_htp(view, enc, images, TINY_TP, ep, run)  # all from the cache
    assert again.to_json() == doc
