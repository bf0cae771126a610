"""The embedded simulation with the HTP's Conv+ReLU requantization against the real emulator."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.backends.htp_runner import HtpBackend, HtpConfig
from pipeline.backends.qnn_htp import input_shape
from pipeline.data.tensors import read_raw
from pipeline.graph.rewrite import with_outputs
from pipeline.graph.runtime import Runner
from pipeline.graph.view import analyze
from pipeline.quantization.htp_requant import shift_bits
from pipeline.quantization.simulate import SimOptions, build_quantized_model
from tests.qnn_models import TINY_TP, calibrated, needs_htp, tiny_model


@pytest.mark.parametrize(
    ("m", "k"), [(0.1, 0), (1 / 8, 0), (1 / 16, 1), (1 / 17, 1), (0.001, 6), (2.0, 0)]
)
def test_shift_brings_the_multiplier_above_a_sixteenth_up_to_an_eighth(m, k):
    assert shift_bits(m) == k
    if k:
        assert 1 / 16 < m * 2**k <= 1 / 8


@needs_htp
def test_htp_requant_matches_the_emulator_on_the_first_conv_relu(photos, tmp_path):
    """Teacher-forced by construction: the first Conv+BN+ReLU takes the quantized image, which
    is the same on both sides, so every difference belongs to its requantization."""
    view = analyze(tiny_model())
    enc, raws = calibrated(view, photos, tmp_path)
    shape = input_shape(TINY_TP.height, TINY_TP.width, "NCHW")
    htp = HtpBackend(HtpConfig(shape)).prepare(view, enc, ["r1"])
    sims = {
        mode: Runner(
            with_outputs(build_quantized_model(view, enc, SimOptions(requant=mode)), ["r1"])
        )
        for mode in ("reference", "htp")
    }
    scale = enc.activations["r1"].scale
    equal = dict.fromkeys(sims, 0)
    total = 0
    for r in raws:
        x = read_raw(r, TINY_TP, "NCHW")
        want = np.rint(htp.run(x)["r1"] / scale)
        total += want.size
        for mode, sim in sims.items():
            equal[mode] += int(np.count_nonzero(np.rint(sim.run(x, ["r1"])["r1"] / scale) == want))
    share = {m: n / total for m, n in equal.items()}
    assert share["htp"] > share["reference"], share
    assert share["htp"] >= 0.99, share
