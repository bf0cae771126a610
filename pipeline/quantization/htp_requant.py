"""The HTP's requantization of Conv/ConvTranspose groups, for the embedded simulation
(``SimOptions.requant = "htp"``; docs/quantization.md §8.5).

Fitted on Qualcomm's HTP emulator (onnxruntime-qnn 2.7.0, QAIRT 2.51.0) against exact int32
accumulators, teacher-forced per layer (each group fed the HTP's own quantized inputs). With
``M = float32(s_in * s_w[c] / s_out)`` (from the float32 scales), ``e = floor(log2(1 / M))``
and the output zero point ``zo = -offset``, the HTP computes::

    Z = round(float32(zo / M))              the zero point, folded into the accumulator
    j = floor((acc + Z) / 2^k)              the accumulator shifted right, flooring
    m = round(M * 2^b)                      the multiplier, an integer
    q = clip((j * m + 2^(b-k-1)) >> (b - k), 0, 2^bw - 1)

with ``k = max(0, e - 3)``, ``b = k + 14`` (an 11-bit multiplier after the shift) for Conv,
ConvTranspose and stride-1 depthwise Conv, and ``k = 0``, ``b = e + 15`` (a 15-bit multiplier,
no shift; its rounding takes exact halves down) for strided depthwise Conv. Every other
rounding is half up. A fused ReLU needs nothing more: its output has ``zo = 0`` and the clip
at 0 is the ReLU. On the demo this reproduces every Conv group's output integers but about one
element in ten million (docs §8.5). It applies where input, weights and output are 8-bit, the
configuration it was fitted on; other groups keep the reference rounding.

In the simulation graph each such Conv writes ``<conv_output>__htp_y``, and a chain rebuilds
the accumulator ``acc = Round(y / (s_in s_w))`` (exact while ``|acc| < 2^24``, in float32),
applies the rule exactly (float32 where it is exact, float64 for strided depthwise Convs) and
writes the dequantized grid value
``(q + offset) * s_out`` (float32, as the activation quantizer computes it) to ``conv_output``,
so the group's ReLU and activation quantizer that follow leave it unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from pipeline.graph.view import ModelView, WeightedOp
from pipeline.quantization.encodings import Encodings


def multiplier(s_in: float, s_w: float, s_out: float) -> float:
    """``M`` above: the float32 scales' product and quotient, rounded to float32."""
    f = np.float32
    return float(f(float(f(s_in)) * float(f(s_w)) / float(f(s_out))))


def shift_bits(m: float, strided_depthwise: bool = False) -> int:
    """Bits the HTP drops from the accumulator before multiplying by ``m`` (``k`` above)."""
    return 0 if strided_depthwise else max(0, math.floor(math.log2(1.0 / m)) - 3)


def post_shift(m: float, strided_depthwise: bool = False) -> int:
    """Bits the product ``j * m_int`` is shifted right by, rounding half up (``b - k`` above)."""
    return math.floor(math.log2(1.0 / m)) + 15 if strided_depthwise else 14


def integer_multiplier(m: float, strided_depthwise: bool = False) -> int:
    """``round(M 2^b)`` (exact halves down for strided depthwise Convs)."""
    x = m * 2.0 ** (shift_bits(m, strided_depthwise) + post_shift(m, strided_depthwise))
    return math.ceil(x - 0.5) if strided_depthwise else math.floor(x + 0.5)


def folded_zero_point(zero_point: int, m: float) -> int:
    """``Z`` above: ``zo / M`` divided in float32, rounded half up."""
    return math.floor(float(np.float32(zero_point) / np.float32(m)) + 0.5)


def requantize(
    acc: NDArray[np.int64], m: float, zero_point: int, top: int, strided_depthwise: bool = False
) -> NDArray[np.int64]:
    """The HTP's output integers for int32 accumulators ``acc`` of one channel with multiplier
    ``m`` (:func:`multiplier`): the rule above in integers, which the simulation graph's
    chain computes in float64."""
    k, s = shift_bits(m, strided_depthwise), post_shift(m, strided_depthwise)
    j = np.floor_divide(acc.astype(np.int64) + folded_zero_point(zero_point, m), 2**k)
    q = (j * integer_multiplier(m, strided_depthwise) + 2 ** (s - 1)) >> s
    out: NDArray[np.int64] = np.clip(q, 0, top)
    return out


def _channel_scales(op: WeightedOp, enc: Encodings) -> NDArray[np.float64]:
    n = op.weight.shape[1] * op.group if op.op_type == "ConvTranspose" else op.weight.shape[0]
    w = enc.weights[op.weight_name]
    return np.array([e.scale for e in w] if len(w) == n else [w[0].scale] * n, np.float64)


def applies(op: WeightedOp, enc: Encodings) -> bool:
    """A Conv/ConvTranspose with 8-bit input, weights and output encodings."""
    if op.op_type not in ("Conv", "ConvTranspose"):
        return False
    e_in, e_out = enc.activations.get(op.input), enc.activations.get(op.output)
    w = enc.weights.get(op.weight_name)
    return (
        e_in is not None
        and e_out is not None
        and bool(w)
        and {e_in.bitwidth, e_out.bitwidth, *(e.bitwidth for e in w or [])} == {8}
    )


def is_strided_depthwise(op: WeightedOp, node: onnx.NodeProto) -> bool:
    """A depthwise Conv (one input channel per group) with a stride above 1."""
    strides = next((list(a.ints) for a in node.attribute if a.name == "strides"), [1])
    return op.op_type == "Conv" and op.group > 1 and op.weight.shape[1] == 1 and max(strides) > 1


def _constants(op: WeightedOp, enc: Encodings, strided_dw: bool) -> dict[str, NDArray[Any]]:
    """Per output channel (shape (1, C, 1, 1)): 1 / (s_in s_w) in float32; Z, 2^-k and the
    multiplier ``m_int / 2^(b - k)`` (the rule above); then scalars: 0.5, 0, the grid's top,
    and in float32 its offset and scale. The rule's values are float64 for strided depthwise
    Convs, whose 15-bit multiplier puts ``j m_int`` beyond float32's 24 bits; elsewhere
    float32 is exact: ``j m_int / 2^14`` is an integer under 2^24 while ``|j m| < 2^10``, and a
    larger value clips anyway."""
    e_in, e_out = enc.activations[op.input], enc.activations[op.output]
    s_w = _channel_scales(op, enc)
    m = [multiplier(e_in.scale, x, e_out.scale) for x in s_w]
    shape, dtype = (1, len(m), 1, 1), np.float64 if strided_dw else np.float32

    def per_channel(values: list[float]) -> NDArray[Any]:
        return np.array(values, dtype).reshape(shape)

    return {
        "inv_unit": (1.0 / (e_in.scale * s_w)).reshape(shape).astype(np.float32),
        "z": per_channel([folded_zero_point(-e_out.offset, x) for x in m]),
        "inv_2k": per_channel([2.0 ** -shift_bits(x, strided_dw) for x in m]),
        "mult": per_channel(
            [integer_multiplier(x, strided_dw) / 2.0 ** post_shift(x, strided_dw) for x in m]
        ),
        "half": np.array(0.5, dtype),
        "zero": np.array(0.0, dtype),
        "top": np.array(float(e_out.steps), dtype),
        "offset": np.array(e_out.offset, np.float32),
        "scale": np.array(e_out.scale, np.float32),
    }


def _chain(p: str, conv_output: str, double: bool) -> list[onnx.NodeProto]:
    """Nodes from ``<p>_y`` (the Conv's float output) to ``conv_output`` (the grid value),
    the rule in float64 when ``double``."""
    mk = helper.make_node
    acc, q = (f"{p}_acc", f"{p}_q64") if double else (f"{p}_acc32", f"{p}_q")
    nodes = [
        mk("Mul", [f"{p}_y", f"{p}_inv_unit"], [f"{p}_acc_f"]),
        mk("Round", [f"{p}_acc_f"], [f"{p}_acc32"]),
        mk("Add", [acc, f"{p}_z"], [f"{p}_az"]),
        mk("Mul", [f"{p}_az", f"{p}_inv_2k"], [f"{p}_sh_f"]),
        mk("Floor", [f"{p}_sh_f"], [f"{p}_j"]),
        mk("Mul", [f"{p}_j", f"{p}_mult"], [f"{p}_v"]),
        mk("Add", [f"{p}_v", f"{p}_half"], [f"{p}_vh"]),
        mk("Floor", [f"{p}_vh"], [f"{p}_q_raw"]),
        mk("Clip", [f"{p}_q_raw", f"{p}_zero", f"{p}_top"], [q]),
        mk("Add", [f"{p}_q", f"{p}_offset"], [f"{p}_qo"]),
        mk("Mul", [f"{p}_qo", f"{p}_scale"], [conv_output]),
    ]
    if double:
        nodes.insert(2, mk("Cast", [f"{p}_acc32"], [f"{p}_acc"], to=TensorProto.DOUBLE))
        nodes.insert(10, mk("Cast", [f"{p}_q64"], [f"{p}_q"], to=TensorProto.FLOAT))
    return nodes


def accumulator_shift(
    view: ModelView,
    enc: Encodings,
    nodes: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
    skip: frozenset[str] = frozenset(),
) -> list[onnx.NodeProto]:
    """Rewire each applicable Conv in ``nodes`` (its output renamed ``<conv_output>__htp_y``)
    and return the chains that produce ``conv_output`` again; constants go to ``inits``.
    Layers in ``skip`` (node ids or kept tensors left in float), and Convs reading one, are
    not touched."""
    producers = {o: n for n in nodes for o in n.output}
    chains: list[onnx.NodeProto] = []
    for op in view.weighted:
        if not applies(op, enc) or {op.node, op.input, op.output} & skip:
            continue
        # a Conv without a fused ReLU writes its kept tensor, which the simulation renamed
        out = next((o for o in (op.conv_output, f"{op.conv_output}__f") if o in producers), "")
        if not out:
            continue
        conv = producers[out]
        p, strided_dw = f"{op.conv_output}__htp", is_strided_depthwise(op, conv)
        for name, v in _constants(op, enc, strided_dw).items():
            inits.append(numpy_helper.from_array(v, f"{p}_{name}"))
        conv.output[list(conv.output).index(out)] = f"{p}_y"
        chains += _chain(p, out, double=strided_dw)
    return chains
