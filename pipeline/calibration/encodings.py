"""Encoding rules: from calibration statistics and weights to the model's :class:`Encodings`.

Activations: ``tf`` / ``symmetric`` from each kept tensor's range, ``enhanced`` / ``percentile``
from its histogram. Weights: per-channel symmetric, or one encoding per tensor in any mode.
Biases: int32 at input scale x weight scale, or 8-bit ``tf``. All in QNN's convention,
``real = scale * (q + offset)`` (:mod:`pipeline.quantization.encoding`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from pipeline.calibration.statistics import Statistics
from pipeline.errors import NoStatisticsError
from pipeline.graph.view import ModelView, WeightedOp
from pipeline.params import QuantizeParams
from pipeline.quantization.encoding import (
    Encoding,
    adjusted_encoding,
    int32_bias_encoding,
    symmetric_encoding,
    tf_encoding,
)
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.histogram import Pdf, enhanced_encoding, percentile_encoding


def _minmax_encoding(
    mode: str, lo: float, hi: float, bitwidth: int, qp: QuantizeParams
) -> Encoding | None:
    """``tf`` or ``symmetric`` from a range, with the §10 knobs in ``qp``; None for the modes
    that need more than a range."""
    if mode == "tf":
        return tf_encoding(lo, hi, bitwidth, qp.min_range_value)
    if mode == "symmetric":
        return symmetric_encoding(
            lo,
            hi,
            bitwidth,
            qp.min_range_value,
            strict=qp.strict_symmetric,
            unsigned=qp.unsigned_symmetric,
            rule=qp.symmetric_scale_rule,
        )
    return None


def activation_encoding(name: str, stats: Statistics, qp: QuantizeParams) -> Encoding:
    a = qp.activations
    lo, hi = stats.minmax.range_of(name)
    enc = _minmax_encoding(a.mode, lo, hi, a.bitwidth, qp)
    if enc is not None:
        return enc
    assert stats.pdfs is not None, "histogram modes need histograms collected"
    pdf = stats.pdfs[name]
    if a.mode == "enhanced":
        return enhanced_encoding(pdf, a.bitwidth, False, min_range=qp.min_range_value)
    return percentile_encoding(pdf, a.percentile, a.bitwidth, qp.min_range_value)


def _one_weight_encoding(
    lo: float, hi: float, data: NDArray[np.float32], qp: QuantizeParams
) -> Encoding:
    wp = qp.weights
    enc = _minmax_encoding(wp.mode, lo, hi, wp.bitwidth, qp)
    if enc is not None:
        return enc
    if wp.mode == "adjusted":
        return adjusted_encoding(lo, hi, wp.bitwidth, qp.min_range_value)
    pdf = Pdf()
    pdf.update(data)  # weights are one "batch"
    if wp.mode == "enhanced":
        return enhanced_encoding(pdf, wp.bitwidth, False, min_range=qp.min_range_value)
    return percentile_encoding(pdf, wp.percentile, wp.bitwidth, qp.min_range_value)


def weight_encodings(w: NDArray[np.float32], axis: int, qp: QuantizeParams) -> list[Encoding]:
    """One encoding per output channel (per-channel, always symmetric) or one for the tensor."""
    wp = qp.weights
    if wp.per_channel:
        moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)  # (C_out, rest)
        return [
            symmetric_encoding(
                float(c.min()),
                float(c.max()),
                wp.bitwidth,
                qp.min_range_value,
                strict=qp.strict_symmetric,
                rule=qp.symmetric_scale_rule,
            )
            for c in moved
        ]
    return [_one_weight_encoding(float(w.min()), float(w.max()), w, qp)]


def bias_encodings(
    op: WeightedOp, enc: Encodings, bias_bitwidth: int, min_range: float | None
) -> list[Encoding]:
    """Bias grid: int32 at input scale x weight scale (per channel like the weights), or tf."""
    if bias_bitwidth == 8:
        return [tf_encoding(float(op.bias.min()), float(op.bias.max()), 8, min_range)]
    w_encs = enc.weights[op.weight_name]
    in_enc = enc.activations.get(op.input)
    scale_in = in_enc.scale if in_enc is not None else 1.0
    n = op.bias.shape[0]
    scales = [w.scale for w in w_encs] if len(w_encs) == n else [w_encs[0].scale] * n
    return [int32_bias_encoding(scale_in, s) for s in scales]


def compute_encodings(view: ModelView, stats: Statistics, qp: QuantizeParams) -> Encodings:
    """Encodings for every activation tensor of the model and every weight and bias."""
    if stats.minmax.count == 0:
        raise NoStatisticsError(
            "the calibration set is empty: curate picked no calibration images. "
            "Check curate.calibration quotas and that ingest found images."
        )
    acts: dict[str, Encoding] = {}
    for name in view.kept_tensors:
        try:
            acts[name] = activation_encoding(name, stats, qp)
        except ValueError as err:
            raise NoStatisticsError(f"tensor {name!r}: {err}") from None
    weights = {op.weight_name: weight_encodings(op.weight, op.axis, qp) for op in view.weighted}
    axes = {op.weight_name: op.axis for op in view.weighted}
    partial = Encodings(acts, weights, {}, axes)
    biases = {
        op.bias_name: bias_encodings(op, partial, qp.bias_bitwidth, qp.min_range_value)
        for op in view.weighted
        if op.bias_name
    }
    return Encodings(acts, weights, biases, axes)


def quantizer_args(qp: QuantizeParams, model_sha: str, images: int) -> dict[str, object]:
    """The ``quantizer_args`` block of the encodings file (0.6.1 names, plus fieldcal's own)."""
    a, w = qp.activations, qp.weights
    return {
        "activation_bitwidth": a.bitwidth,
        "param_bitwidth": w.bitwidth,
        "dtype": "int",
        "is_symmetric": str(w.mode == "symmetric" or w.per_channel),
        "per_channel_quantization": str(w.per_channel),
        "quant_scheme": f"act:{a.mode} param:{w.mode}",
        "fieldcal": {
            "backend": qp.backend,
            "bias_bitwidth": qp.bias_bitwidth,
            "calibration_images": images,
            "min_range": qp.min_range,
            "model_sha256": model_sha,
            "round_mode": qp.round_mode,
            "symmetric_scale_rule": qp.symmetric_scale_rule,
            "fused_tensors_note": (
                "activation_encodings cover the tensors QNN keeps after BatchNorm folding and "
                "Conv(+BN)+ReLU/ReLU6 fusion; a fused-away tensor (Conv output before "
                "BatchNorm/ReLU) has no encoding of its own, as in QNN"
            ),
        },
    }
