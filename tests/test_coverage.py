"""Coverage verdicts: the reason shows clip rates with the digits that tell them from the limit."""

from __future__ import annotations

from pipeline.analysis.coverage import Coverage, TensorAcc, verdict
from pipeline.params import CoverageParams
from pipeline.quantization.encoding import tf_encoding
from pipeline.quantization.encodings import Encodings


def _coverage(clipped: int) -> Coverage:
    acc = TensorAcc(n=1_000_000, clipped=clipped, signal=1.0, noise=1e-3, peak=1.0)
    return Coverage(images=4, tensors={"t": acc})


def _encodings() -> Encodings:
    return Encodings(activations={"t": tf_encoding(-1.0, 1.0)}, weights={}, biases={})


def test_a_clip_rate_just_over_its_limit_reads_as_over_it() -> None:
    v = verdict(_coverage(13), _coverage(0), _encodings(), CoverageParams(clip_rate_max=1e-5))
    assert v.requantize == "yes"
    assert "clips 0.0013 % of its values (limit 0.0010 %)" in v.reason


def test_a_passing_session_shows_its_worst_clip_rate_beside_the_limit() -> None:
    v = verdict(_coverage(9), _coverage(0), _encodings(), CoverageParams(clip_rate_max=1e-5))
    assert v.requantize == "no"
    assert "no tensor clips more than 0.00100 % (worst 0.00090 %)" in v.reason
