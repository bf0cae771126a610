"""Reading a QDQ model's quantizers back and holding them against the encodings it was made
from (:func:`pipeline.quantization.qdq.export_qdq`): every scale and zero point, none missing,
and the 8/16-bit conversions of a mixed model, each with the encoding its consumers receive."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import numpy_helper

from pipeline.graph.view import ModelView
from pipeline.quantization.encoding import Encoding, onnx_zero_point
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.mixed import WIDEN, plan, widened
from pipeline.quantization.qdq import (
    Q_SUFFIX,
    READ16,
    WRITE16,
    bias_scales,
    is_signed_symmetric,
)


@dataclass(frozen=True)
class QParam:
    """One channel of a quantizer as stored in the QDQ model."""

    scale: float  # float32 value, widened
    zero_point: int
    dtype: str  # "uint8", "int8", "uint16", "int32", ...


def read_back(model: onnx.ModelProto) -> dict[str, list[QParam]]:
    """Every quantizer's parameters, keyed by the tensor it stands for, one per channel.

    Activations: each QuantizeLinear, keyed by its output without ``__q`` (the kept tensor; a
    conversion's ``<tensor>__r16`` or ``<tensor>__w16``, :mod:`pipeline.quantization.mixed`).
    Weights and biases: each DequantizeLinear of an initializer, keyed by its output (the
    initializer's name). A DequantizeLinear of a QuantizeLinear's output whose parameters differ
    from that QuantizeLinear's is a ``ValueError``.
    """
    inits = {i.name: np.atleast_1d(numpy_helper.to_array(i)) for i in model.graph.initializer}
    q_params = {
        n.output[0]: (n.input[1], n.input[2])
        for n in model.graph.node
        if n.op_type == "QuantizeLinear"
    }
    out: dict[str, list[QParam]] = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            out[node.output[0].removesuffix(Q_SUFFIX)] = _qparams(inits, node)
        elif node.op_type == "DequantizeLinear":
            q = q_params.get(node.input[0])
            if q is None:
                out[node.output[0]] = _qparams(inits, node)
            elif not (
                np.array_equal(inits[q[0]], inits[node.input[1]])
                and np.array_equal(inits[q[1]], inits[node.input[2]])
            ):
                raise ValueError(
                    f"{node.output[0]!r}: QuantizeLinear and DequantizeLinear parameters differ"
                )
    return out


def _qparams(inits: Mapping[str, NDArray[np.generic]], node: onnx.NodeProto) -> list[QParam]:
    scale, zp = inits[node.input[1]], inits[node.input[2]]
    zps = np.broadcast_to(zp, scale.shape)
    return [QParam(float(s), int(z), str(zp.dtype)) for s, z in zip(scale, zps, strict=True)]


def _activation(e: Encoding) -> QParam:
    return QParam(float(np.float32(e.scale)), onnx_zero_point(e), f"uint{e.bitwidth}")


def expected_qparams(view: ModelView, enc: Encodings) -> dict[str, list[QParam]]:
    """What :func:`read_back` must find for ``enc``: every kept tensor with an encoding, the
    8/16-bit conversions (:func:`pipeline.quantization.mixed.plan`: the widened encoding), every
    weight and bias, float32 scales (biases: the float32 product of :func:`bias_scales` with
    the input scale the op receives)."""
    mix = plan(view, enc)
    want: dict[str, list[QParam]] = {}
    for t in view.kept_tensors:
        e = enc.activations.get(t)
        if e is not None:
            want[t] = [_activation(e)]
            if t in mix.reads:
                want[t + READ16] = [_activation(widened(e))]
            if t in mix.writes:
                want[t + WRITE16] = [_activation(widened(e))]
    for op in view.weighted:
        encs = enc.weights[op.weight_name]
        signed = is_signed_symmetric(encs[0])
        dt = ("int" if signed else "uint") + str(encs[0].bitwidth)
        want[op.weight_name] = [
            QParam(float(np.float32(e.scale)), 0 if signed else onnx_zero_point(e), dt)
            for e in encs
        ]
        if op.bias_name:
            received = mix.received(op.input, op.node, enc)
            want[op.bias_name] = [
                QParam(float(s), 0, "int32")
                for s in bias_scales(op, enc, received).astype(np.float64)
            ]
    return want


def verify(
    read: Mapping[str, list[QParam]], view: ModelView, enc: Encodings, bias_ulps: int = 2
) -> list[str]:
    """Differences between what :func:`read_back` found and the encodings, one line each; empty
    when every tensor is present with its exact float32 scale, zero point and dtype, and
    nothing else is. Bias scales must also lie within ``bias_ulps`` float32 ulps of the
    encodings' float64 ``s_in * s_w`` (divided by 257 where the op reads its input widened)."""
    want = expected_qparams(view, enc)
    mix = plan(view, enc)
    problems = [
        f"{name}: in the QDQ model but not in the encodings" for name in read.keys() - want.keys()
    ]
    for name, channels in want.items():
        got = read.get(name)
        if got is None:
            problems.append(f"{name}: no quantizer carries it")
        elif got != channels:
            problems.append(f"{name}: QDQ has {got[:3]}..., the encodings {channels[:3]}...")
    for op in view.weighted:
        if op.bias_name and op.bias_name in read:
            factor = WIDEN if mix.widens(op.input, op.node) else 1
            for got_q, e in zip(read[op.bias_name], enc.biases[op.bias_name], strict=False):
                s = e.scale / factor
                if abs(got_q.scale - s) > bias_ulps * float(np.spacing(np.float32(s))):
                    problems.append(f"bias {op.bias_name}: scale {got_q.scale!r} != {s!r}")
    return sorted(problems)
