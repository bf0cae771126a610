"""Reading a QDQ model's quantizers back and holding them against the encodings it was made
from (:func:`pipeline.quantization.qdq.export_qdq`): every scale and zero point, none missing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from pipeline.graph.view import ModelView
from pipeline.quantization.encoding import onnx_zero_point
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.qdq import DQ_SUFFIX, bias_scales, is_signed_symmetric


@dataclass(frozen=True)
class QParam:
    """One channel of a quantizer as stored in the QDQ model."""

    scale: float  # float32 value, widened
    zero_point: int
    dtype: str  # "uint8", "int8", "uint16", "int32", ...


def read_back(model: onnx.ModelProto) -> dict[str, list[QParam]]:
    """Every DequantizeLinear's parameters, keyed by the tensor it stands for, one per channel.

    The key is the DQ's output name (the graph input's ``<name>__dq`` maps back to ``<name>``):
    the kept tensor for activations, the initializer name for weights and biases. A
    QuantizeLinear whose parameters differ from its DequantizeLinear's is a ``ValueError``.
    """
    inits = {i.name: np.atleast_1d(numpy_helper.to_array(i)) for i in model.graph.initializer}
    q_params = {
        n.output[0]: (n.input[1], n.input[2])
        for n in model.graph.node
        if n.op_type == "QuantizeLinear"
    }
    out: dict[str, list[QParam]] = {}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        scale, zp = inits[node.input[1]], inits[node.input[2]]
        key = node.output[0].removesuffix(DQ_SUFFIX)
        q = q_params.get(node.input[0])
        if q is not None and not (
            np.array_equal(inits[q[0]], scale) and np.array_equal(inits[q[1]], zp)
        ):
            raise ValueError(f"{key!r}: QuantizeLinear and DequantizeLinear parameters differ")
        zps = np.broadcast_to(zp, scale.shape)
        out[key] = [
            QParam(float(s), int(z), str(zp.dtype)) for s, z in zip(scale, zps, strict=True)
        ]
    return out


def expected_qparams(view: ModelView, enc: Encodings) -> dict[str, list[QParam]]:
    """What :func:`read_back` must find for ``enc``: every kept tensor with an encoding, every
    weight and bias, float32 scales (biases: the float32 product of :func:`bias_scales`)."""
    want: dict[str, list[QParam]] = {}
    for t in view.kept_tensors:
        e = enc.activations.get(t)
        if e is not None:
            dt = "uint8" if e.bitwidth == 8 else "uint16"
            want[t] = [QParam(float(np.float32(e.scale)), onnx_zero_point(e), dt)]
    for op in view.weighted:
        encs = enc.weights[op.weight_name]
        signed = is_signed_symmetric(encs[0])
        dt = ("int" if signed else "uint") + str(encs[0].bitwidth)
        want[op.weight_name] = [
            QParam(float(np.float32(e.scale)), 0 if signed else onnx_zero_point(e), dt)
            for e in encs
        ]
        if op.bias_name:
            want[op.bias_name] = [
                QParam(float(s), 0, "int32") for s in bias_scales(op, enc).astype(np.float64)
            ]
    return want


def verify(
    read: Mapping[str, list[QParam]], view: ModelView, enc: Encodings, bias_ulps: int = 2
) -> list[str]:
    """Differences between what :func:`read_back` found and the encodings, one line each; empty
    when every tensor is present with its exact float32 scale, zero point and dtype, and
    nothing else is. Bias scales must also lie within ``bias_ulps`` float32 ulps of the
    encodings' float64 ``s_in * s_w``."""
    want = expected_qparams(view, enc)
    problems = [
        f"{name}: in the QDQ model but not in the encodings" for name in read.keys() - want.keys()
    ]
    for name, channels in want.items():
        got = read.get(name)
        if got is None:
            problems.append(f"{name}: no DequantizeLinear carries it")
        elif got != channels:
            problems.append(f"{name}: QDQ has {got[:3]}..., the encodings {channels[:3]}...")
    for op in view.weighted:
        if op.bias_name and op.bias_name in read:
            for got_q, e in zip(read[op.bias_name], enc.biases[op.bias_name], strict=False):
                if abs(got_q.scale - e.scale) > bias_ulps * float(np.spacing(np.float32(e.scale))):
                    problems.append(f"bias {op.bias_name}: scale {got_q.scale!r} != {e.scale!r}")
    return sorted(problems)
