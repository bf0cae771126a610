"""A small CNN whose every node the QNN HTP takes, and encodings calibrated on real photographs.

Shared by the QDQ export and HTP backend tests: Conv+BN+ReLU, depthwise Conv+ReLU, a Conv without
ReLU, Add, ConvTranspose+ReLU and a Sigmoid head, the kinds of group CenterFace has.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.backends.qnn_htp import unsupported_platform
from pipeline.calibration.collect import Calibrator
from pipeline.graph.view import ModelView
from pipeline.params import QuantizeParams, TensorsParams
from pipeline.quantization.encodings import Encodings
from tests.photos import photo_raws

TINY_TP = TensorsParams(height=32, width=48, layout="NCHW")

# HTP tests run wherever onnxruntime-qnn has a wheel, and skip only where it has none: on a
# supported machine without the qnn extra they fail, naming `pip install 'fieldcal[qnn]'`.
_NO_WHEEL = unsupported_platform()
needs_htp = pytest.mark.skipif(_NO_WHEEL is not None, reason=_NO_WHEEL or "")


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(arr.astype(np.float32), name)


def tiny_model() -> onnx.ModelProto:
    """(N, 3, H, W) image in [0, 255] -> (N, 1, H, W) sigmoid map and (N, 4, H, W) boxes."""
    rng = np.random.default_rng(7)
    inits = [
        _init("w1", rng.normal(size=(8, 3, 3, 3)) * 0.02),
        _init("bn_g", rng.uniform(0.5, 1.5, 8)),
        _init("bn_b", rng.normal(size=8)),
        _init("bn_m", rng.normal(size=8) * 0.1),
        _init("bn_v", rng.uniform(0.5, 2, 8)),
        _init("wd", rng.normal(size=(8, 1, 3, 3)) * 0.3),
        _init("bd", rng.normal(size=8) * 0.1),
        _init("w3", rng.normal(size=(8, 8, 1, 1)) * 0.3),
        _init("b3", rng.normal(size=8) * 0.1),
        _init("wt", rng.normal(size=(8, 8, 2, 2)) * 0.3),
        _init("bt", rng.normal(size=8) * 0.1),
        _init("wh", rng.normal(size=(1, 8, 1, 1)) * 0.3),
        _init("bh", rng.normal(size=1) * 0.1),
        _init("wb", rng.normal(size=(4, 8, 1, 1)) * 0.3),
        _init("bb", rng.normal(size=4) * 0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c1", "bn_g", "bn_b", "bn_m", "bn_v"], ["bn1"]),
        helper.make_node("Relu", ["bn1"], ["r1"]),
        helper.make_node("Conv", ["r1", "wd", "bd"], ["cd"], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Relu", ["cd"], ["rd"]),
        helper.make_node("Conv", ["rd", "w3", "b3"], ["c3"]),
        helper.make_node("Add", ["c3", "r1"], ["sum"]),
        helper.make_node("ConvTranspose", ["sum", "wt", "bt"], ["ct"], strides=[2, 2]),
        helper.make_node("Relu", ["ct"], ["rt"]),
        helper.make_node("Conv", ["rt", "wh", "bh"], ["ch"]),
        helper.make_node("Sigmoid", ["ch"], ["heat"]),
        helper.make_node("Conv", ["rt", "wb", "bb"], ["boxes"]),
    ]
    g = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [
            helper.make_tensor_value_info("heat", TensorProto.FLOAT, ["N", 1, "H", "W"]),
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 4, "H", "W"]),
        ],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    return m


def calibrated(
    view: ModelView,
    photos: list[Path],
    folder: Path,
    tp: TensorsParams = TINY_TP,
    qp: QuantizeParams | None = None,
) -> tuple[Encodings, list[Path]]:
    """Encodings from three demo photographs at ``tp``'s size, and their ``.raw`` tensors."""
    raws = photo_raws(photos, folder, tp)
    calib = Calibrator(view, tp, qp or QuantizeParams())
    return calib.compute_data(calib.collect_data(raws, histograms=False)), raws


def calibrated_raised(
    view: ModelView,
    photos: list[Path],
    folder: Path,
    raised: list[str],
    tp: TensorsParams = TINY_TP,
) -> tuple[Encodings, list[Path]]:
    """:func:`calibrated`, then ``raised`` at 16 bits as the remedies stage raises them
    (:func:`pipeline.analysis.precision.raise16` over the calibration ranges)."""
    from pipeline.analysis.precision import raise16

    raws = photo_raws(photos, folder, tp)
    qp = QuantizeParams()
    calib = Calibrator(view, tp, qp)
    stats = calib.collect_data(raws, histograms=False)
    return raise16(view, qp, calib.compute_data(stats), stats.minmax, raised), raws
