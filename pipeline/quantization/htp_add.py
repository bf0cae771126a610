"""The HTP's quantized Add, for the embedded simulation (``SimOptions.requant = "htp"``;
docs/quantization.md §8.5).

Fitted on Qualcomm's HTP emulator (onnxruntime-qnn 2.7.0, QAIRT 2.51.0), teacher-forced, on
every Add of the demo (13 layers, input/output scale ratios 0.24-0.98): with the inputs' and
output's float32 scales ``s_a, s_b, s_o``, zero points ``za, zb, zo`` and 8-bit integers
``qa, qb``, the HTP computes::

    A = round(s_a / s_o * 2^13)             B = round(s_b / s_o * 2^13)
    K = round((zo - A za / 2^13 - B zb / 2^13) * 2^5) * 2^8
    q = clip((qa A + qb B + K + 2^12) >> 13, 0, 2^bw - 1)

so both rescale factors keep 13 fractional bits, the folded zero points 5, and the sum rounds
half up. This reproduces every output integer on those layers (the reference rounding: 99.39 %,
the misses within 0.015 of a .5 tie).

In the simulation graph, the Add is replaced by a chain that recovers ``qa`` and ``qb`` from
the dequantized inputs (``Round(x / s) - offset``: exact on the grid), applies the rule (in
float32 where every partial sum stays under 2^24, else float64: exact either way) and writes
the dequantized grid value ``(q + offset) * s_o`` (float32, as the activation quantizer
computes it), which the output's quantizer leaves unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pipeline.graph.view import ModelView
from pipeline.quantization.encoding import Encoding
from pipeline.quantization.encodings import Encodings

FRAC_BITS = 13  # the rescale factors' fractional bits
CONST_BITS = 5  # the folded zero points' fractional bits


def _f32(v: float) -> float:
    return float(np.float32(v))


def factors(a: Encoding, b: Encoding, out: Encoding) -> tuple[int, int, int]:
    """``A``, ``B`` and ``K + 2^12`` above, from the three encodings."""
    so = _f32(out.scale)
    fa = math.floor(_f32(a.scale) / so * 2**FRAC_BITS + 0.5)
    fb = math.floor(_f32(b.scale) / so * 2**FRAC_BITS + 0.5)
    c = -out.offset + (fa * a.offset + fb * b.offset) / 2**FRAC_BITS
    k = math.floor(c * 2**CONST_BITS + 0.5) * 2 ** (FRAC_BITS - CONST_BITS)
    return fa, fb, k + 2 ** (FRAC_BITS - 1)


def add(qa: int, qb: int, a: Encoding, b: Encoding, out: Encoding) -> int:
    """The HTP's output integer for input integers ``qa``, ``qb`` (the rule above)."""
    fa, fb, k = factors(a, b, out)
    return min(max((qa * fa + qb * fb + k) >> FRAC_BITS, 0), out.steps)


def _grid_input(
    p: str, x: str, e: Encoding, dtype: type[np.floating[Any]], inits: list[onnx.TensorProto]
) -> list[onnx.NodeProto]:
    """Nodes giving ``<p>_q`` = the integer of dequantized ``x`` on grid ``e`` (in ``dtype``;
    ``Round(x / s)`` is exact on the grid in either)."""
    inits += [
        numpy_helper.from_array(np.array(_f32(e.scale), dtype), f"{p}_s"),
        numpy_helper.from_array(np.array(float(e.offset), dtype), f"{p}_off"),
    ]
    mk = helper.make_node
    nodes = [
        mk("Div", [f"{p}_x", f"{p}_s"], [f"{p}_t"]),
        mk("Round", [f"{p}_t"], [f"{p}_r"]),
        mk("Sub", [f"{p}_r", f"{p}_off"], [f"{p}_q"]),
    ]
    if dtype == np.float64:
        return [mk("Cast", [x], [f"{p}_x"], to=TensorProto.DOUBLE), *nodes]
    nodes[0].input[0] = x
    return nodes


def _chain(
    node: onnx.NodeProto, encs: tuple[Encoding, Encoding, Encoding], inits: list[onnx.TensorProto]
) -> list[onnx.NodeProto]:
    """The rule in float32 where it is exact (every partial sum under 2^24), else float64."""
    a, b, out = encs
    p = f"{node.output[0]}__htp_add"
    fa, fb, k = factors(a, b, out)
    double = 255 * (fa + fb) + abs(k) >= 2**24
    dtype = np.float64 if double else np.float32
    consts = {
        "fa": np.array(float(fa), dtype),
        "fb": np.array(float(fb), dtype),
        "k": np.array(float(k), dtype),
        "inv": np.array(2.0**-FRAC_BITS, dtype),
        "zero": np.array(0.0, dtype),
        "top": np.array(float(out.steps), dtype),
        "offset": np.array(out.offset, np.float32),
        "scale": np.array(out.scale, np.float32),
    }
    inits += [numpy_helper.from_array(v, f"{p}_{n}") for n, v in consts.items()]
    mk = helper.make_node
    q = f"{p}_q64" if double else f"{p}_qf"
    nodes = [
        *_grid_input(f"{p}_a", node.input[0], a, dtype, inits),
        *_grid_input(f"{p}_b", node.input[1], b, dtype, inits),
        mk("Mul", [f"{p}_a_q", f"{p}_fa"], [f"{p}_ta"]),
        mk("Mul", [f"{p}_b_q", f"{p}_fb"], [f"{p}_tb"]),
        mk("Sum", [f"{p}_ta", f"{p}_tb", f"{p}_k"], [f"{p}_acc"]),
        mk("Mul", [f"{p}_acc", f"{p}_inv"], [f"{p}_v"]),
        mk("Floor", [f"{p}_v"], [f"{p}_q_raw"]),
        mk("Clip", [f"{p}_q_raw", f"{p}_zero", f"{p}_top"], [q]),
        mk("Add", [f"{p}_qf", f"{p}_offset"], [f"{p}_qo"]),
        mk("Mul", [f"{p}_qo", f"{p}_scale"], [node.output[0]]),
    ]
    if double:
        nodes.insert(-2, mk("Cast", [f"{p}_q64"], [f"{p}_qf"], to=TensorProto.FLOAT))
    return nodes


def _encodings(
    view: ModelView, enc: Encodings, node: onnx.NodeProto, skip: frozenset[str]
) -> tuple[Encoding, Encoding, Encoding] | None:
    """The 8-bit encodings of an Add's two inputs and its output, when both inputs are
    quantized kept tensors and nothing of it is left in float; else None."""
    if node.op_type != "Add" or len(node.input) != 2 or not node.output[0].endswith("__f"):
        return None
    out = node.output[0].removesuffix("__f")
    names = [*node.input, out]
    if any(view.fused_into.get(x, x) != x or x in skip for x in names):
        return None
    encs = [enc.activations.get(x) for x in names]
    if any(e is None or e.bitwidth != 8 for e in encs):
        return None
    a, b, o = encs
    assert a is not None and b is not None and o is not None
    return a, b, o


def rescale_adds(
    view: ModelView,
    enc: Encodings,
    nodes: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
    skip: frozenset[str] = frozenset(),
) -> list[onnx.NodeProto]:
    """``nodes`` with each Add of two 8-bit kept tensors (writing its renamed kept tensor
    ``<t>__f``) replaced by the HTP's arithmetic; constants go to ``inits``. Adds touching a
    layer in ``skip`` (kept tensors left in float) stay as they are."""
    out: list[onnx.NodeProto] = []
    for node in nodes:
        encs = _encodings(view, enc, node, skip)
        out += [node] if encs is None else _chain(node, encs, inits)
    return out
