"""The HTP's requantization of Conv/ConvTranspose+ReLU groups, for the embedded simulation
(``SimOptions.requant = "htp"``).

Measured on Qualcomm's HTP emulator (onnxruntime-qnn 2.7.0, QAIRT 2.51.0) against exact int32
accumulators, teacher-forced per layer: before the requantization multiplier
``M = s_in * s_w[c] / s_out`` the HTP shifts the int32 accumulator right by
``k = max(0, floor(log2(1 / M)) - 3)`` bits, flooring, so ``2^k M`` lies in (1/16, 1/8]::

    q = clip(round(floor(acc / 2^k) * 2^k * M - offset), 0, 2^bw - 1)

This makes Conv/ConvTranspose+ReLU groups 99.86 % element-equal to the HTP on the demo (the
reference simulation: 97.6 %). Groups without a fused ReLU (signed outputs, offset != 0) and
Add follow other rules not yet fitted, so they keep the reference requantization.

Here the shift is a chain after the Conv: ``acc = Round(y / unit)``, ``Floor(acc * 2^-k)``,
``* 2^k unit`` with ``unit = s_in * s_w[c]``, in float32: exact while ``|acc| < 2^24``.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import helper, numpy_helper

from pipeline.graph.view import ModelView, WeightedOp
from pipeline.quantization.encodings import Encodings


def shift_bits(m: float) -> int:
    """Bits the HTP drops from the accumulator before multiplying by ``m`` (``M`` above)."""
    return max(0, math.floor(math.log2(1.0 / m)) - 3)


def _channel_scales(op: WeightedOp, enc: Encodings) -> NDArray[np.float64]:
    n = op.weight.shape[1] * op.group if op.op_type == "ConvTranspose" else op.weight.shape[0]
    w = enc.weights[op.weight_name]
    return np.array([e.scale for e in w] if len(w) == n else [w[0].scale] * n, np.float64)


def applies(op: WeightedOp, enc: Encodings) -> bool:
    """A Conv/ConvTranspose whose ReLU is fused (its kept output is the ReLU's)."""
    return (
        op.op_type in ("Conv", "ConvTranspose")
        and op.output != op.conv_output
        and op.input in enc.activations
        and op.output in enc.activations
        and op.weight_name in enc.weights
    )


def accumulator_shift(
    view: ModelView,
    enc: Encodings,
    nodes: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
    skip: frozenset[str] = frozenset(),
) -> list[onnx.NodeProto]:
    """Rewire each applicable Conv in ``nodes`` (its output renamed ``<conv_output>__htp_y``)
    and return the chains that produce ``conv_output`` again; constants go to ``inits``.
    Layers in ``skip`` (node ids or kept tensors left in float) are not touched."""
    producers = {o: n for n in nodes for o in n.output}
    chains: list[onnx.NodeProto] = []
    for op in view.weighted:
        if not applies(op, enc) or {op.node, op.output} & skip:
            continue
        conv = producers.get(op.conv_output)
        if conv is None:
            continue
        s_w = _channel_scales(op, enc)
        s_in, s_out = enc.activations[op.input].scale, enc.activations[op.output].scale
        unit = s_in * s_w
        k = np.array([shift_bits(s_in * sw / s_out) for sw in s_w], np.float64)
        p, shape = f"{op.conv_output}__htp", (1, len(s_w), 1, 1)
        for name, v in (("inv_unit", 1.0 / unit), ("inv_2k", 2.0**-k), ("back", unit * 2.0**k)):
            inits.append(
                numpy_helper.from_array(v.reshape(shape).astype(np.float32), f"{p}_{name}")
            )
        conv.output[list(conv.output).index(op.conv_output)] = f"{p}_y"
        chains += [
            helper.make_node("Mul", [f"{p}_y", f"{p}_inv_unit"], [f"{p}_acc_f"]),
            helper.make_node("Round", [f"{p}_acc_f"], [f"{p}_acc"]),
            helper.make_node("Mul", [f"{p}_acc", f"{p}_inv_2k"], [f"{p}_sh_f"]),
            helper.make_node("Floor", [f"{p}_sh_f"], [f"{p}_sh"]),
            helper.make_node("Mul", [f"{p}_sh", f"{p}_back"], [op.conv_output]),
        ]
    return chains
