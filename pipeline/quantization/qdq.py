"""fieldcal's encodings as a QDQ ONNX model, the form onnxruntime's QNN execution provider runs.

Convention: fieldcal's encodings are QNN's, ``real = scale * (q + offset)`` with
``q in [0, 2^bw - 1]`` and ``offset <= 0``; ONNX stores ``real = scale * (q - zero_point)``, so
``zero_point = -offset`` (:func:`pipeline.quantization.encoding.onnx_zero_point`, the one place
that converts). No calibration runs here: every number comes from the :class:`Encodings` given.

The graph is the one fieldcal simulates (``build_quantized_model``): BatchNormalization folded
into the Conv/ConvTranspose before it (``WeightedOp.weight``/``bias`` hold the folded values) and
one activation quantizer per *kept* tensor, so Conv(+BN)+ReLU has one, at the ReLU's output (the
EP fuses ``DQ -> Conv -> Relu -> Q`` itself). Each quantizer is a QuantizeLinear/DequantizeLinear
pair::

    producer -> t__f -> QuantizeLinear -> t__q -> DequantizeLinear -> t -> consumers

(the graph input: ``x -> Q -> x__q -> DQ -> x__dq``), so every kept tensor keeps its name and
carries its dequantized value. Parameters:

* weights: int8 (int16) with zero point 0 when the encoding is the symmetric grid
  (offset = -2^(bw-1)), else uint with zero point ``-offset``; one scale per output channel
  (axis 0 Conv, 1 ConvTranspose, as :class:`WeightedOp` says) or one per tensor. The integers are
  fieldcal's :func:`quantize` with the simulation's round mode.
* biases: int32, zero point 0, fieldcal's own integers (its float64 grid ``s_in * s_w``), stored
  with scale ``float32(s_in) * float32(s_w)``, the product the EP checks (it re-quantizes a bias
  whose scale differs).
* a weight's DequantizeLinear output takes the initializer's name (the integers move to
  ``<name>__quantized``), so names line up with ``encodings.json``.

Activations are uint8, or uint16 where the bitwidth is 16 (opset >= 21). Where 8- and 16-bit
tensors meet, the op runs at 16 bits (:mod:`pipeline.quantization.mixed`): an 8-bit tensor it
reads gets a conversion to its widened grid (``t__q -> DQ -> Q -> t__r16__q -> DQ -> t__r16``,
the DQ -> Q a QNN Convert), an 8-bit tensor it writes is quantized on the widened grid first
(``t__f -> Q -> t__w16__q -> DQ -> t__w16 -> Q -> t__q -> DQ -> t``). The tensor's own Q/DQ
carries its encodings.json encoding; a conversion carries the widened one, and a bias the scale
of the input its op receives (integers x 257 where that is widened: the same values).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper, version_converter

from pipeline.errors import PipelineError
from pipeline.graph.rewrite import toposort, with_outputs
from pipeline.graph.view import ModelView, WeightedOp
from pipeline.quantization.encoding import Encoding, RoundMode, onnx_zero_point, quantize
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.mixed import WIDEN, Plan, plan, widened

DQ_SUFFIX = "__dq"  # DequantizeLinear output of the graph input
Q_SUFFIX = "__q"
FLOAT_SUFFIX = "__f"
INT_SUFFIX = "__quantized"
READ16 = "__r16"  # an 8-bit tensor widened for the 16-bit ops that read it
WRITE16 = "__w16"  # an 8-bit tensor as a 16-bit op writes it, before its own Q
DEFAULT_OPSET = 21

_ACT_TYPES = {8: TensorProto.UINT8, 16: TensorProto.UINT16}
_NP_OF: dict[int, type[np.integer]] = {
    TensorProto.UINT8: np.uint8,
    TensorProto.UINT16: np.uint16,
    TensorProto.INT8: np.int8,
    TensorProto.INT16: np.int16,
    TensorProto.INT32: np.int32,
}


class QdqExportError(PipelineError):
    """The encodings cannot be carried by a QDQ model as they stand."""


# ---------------------------------------------------------------------------------------------
# export


def export_qdq(
    view: ModelView,
    enc: Encodings,
    round_mode: RoundMode = "half_away",
    opset: int = DEFAULT_OPSET,
) -> onnx.ModelProto:
    """The view's model with QuantizeLinear/DequantizeLinear carrying exactly ``enc``.

    ``round_mode`` is the one the simulation rounds weights with (``quantize.round_mode``).
    Raises :class:`QdqExportError` when an encoding has no QDQ form (a bitwidth other than
    8/16 for activations, a bias that is not int32, 16-bit activations below opset 21).
    """
    if opset < 21 and any(e.bitwidth == 16 for e in enc.activations.values()):
        raise QdqExportError(
            f"16-bit activations need opset >= 21 (uint16 QuantizeLinear); got opset {opset}"
        )
    model = _with_opset(view.model, opset)
    graph = model.graph
    inits: list[onnx.TensorProto] = []
    mix = plan(view, enc)
    body, param_dqs, replaced = _rewire_weighted(view, enc, round_mode, mix, inits)
    act_qdqs = _insert_activation_qdq(view, enc, mix, body, inits)
    nodes = toposort(param_dqs + act_qdqs + body, view.input_name, [*graph.initializer, *inits])
    used = {x for n in nodes for x in n.input}
    kept = [i for i in graph.initializer if i.name in used and i.name not in replaced]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + inits)
    del graph.value_info[:]  # shapes of renamed tensors would be stale
    onnx.checker.check_model(model)
    return model


def _with_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if current > opset:
        raise QdqExportError(f"the model's opset {current} is above the QDQ export's {opset}")
    if current < opset:
        converted: onnx.ModelProto = version_converter.convert_version(model, opset)
        return converted
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _rewire_weighted(
    view: ModelView, enc: Encodings, mode: RoundMode, mix: Plan, inits: list[onnx.TensorProto]
) -> tuple[list[onnx.NodeProto], list[onnx.NodeProto], set[str]]:
    """The graph's nodes with folded BNs gone and each weighted op reading its quantized
    weight and bias through a DequantizeLinear; also those DQ nodes and the replaced names."""
    ops = {op.node: op for op in view.weighted}
    removed_bn = {op.folded_bn for op in view.weighted if op.folded_bn}
    replaced: set[str] = set()
    body: list[onnx.NodeProto] = []
    dqs: list[onnx.NodeProto] = []
    for node in view.model.graph.node:
        node_id = node.name or node.output[0]
        op = ops.get(node_id)
        if node_id in removed_bn:
            continue
        n = onnx.NodeProto()
        n.CopyFrom(node)  # the view's own model stays as it is
        n.name = node_id  # the id mixed.plan names ops by
        body.append(n)
        if op is None:
            continue
        n.output[0] = op.conv_output  # the BN's output when BN was folded in
        del n.input[:]
        n.input.extend([node.input[0], op.weight_name] + ([op.bias_name] if op.bias_name else []))
        if op.weight_name not in replaced:
            dqs.append(_weight_dq(op, enc.weights[op.weight_name], mode, inits))
            replaced.add(op.weight_name)
        if op.bias_name and op.bias_name not in replaced:
            dqs.append(_bias_dq(op, enc, mix, inits))
            replaced.add(op.bias_name)
    return body, dqs, replaced


def _insert_activation_qdq(
    view: ModelView,
    enc: Encodings,
    mix: Plan,
    body: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
) -> list[onnx.NodeProto]:
    """Q/DQ pairs at every kept tensor with an encoding; producers renamed to ``t__f``,
    consumers of the graph input to ``x__dq``; and the 8/16-bit conversions of
    :func:`pipeline.quantization.mixed.plan` (module docstring)."""
    nodes: list[onnx.NodeProto] = []
    for t in view.kept_tensors:
        e = enc.activations.get(t)
        if e is None:
            continue
        readers = mix.reads.get(t, frozenset())
        if readers:  # before the graph input's consumers are renamed to x__dq
            _rename(body, t, t + READ16, inputs=True, only=readers)
            nodes += _convert(t + Q_SUFFIX, t + READ16, t, e, inits)
        if t == view.input_name:
            nodes += _act_qdq(t, t + DQ_SUFFIX, t, e, inits)
            _rename(body, t, t + DQ_SUFFIX, inputs=True)
        elif t in mix.writes:  # written on the widened grid, then narrowed to its own
            w = widened(e)
            nodes += _act_qdq(t + FLOAT_SUFFIX, t + WRITE16, t + WRITE16, w, inits)
            nodes += _act_qdq(t + WRITE16, t, t, e, inits)
            _rename(body, t, t + FLOAT_SUFFIX, inputs=False)
        else:
            nodes += _act_qdq(t + FLOAT_SUFFIX, t, t, e, inits)
            _rename(body, t, t + FLOAT_SUFFIX, inputs=False)
    return nodes


def _convert(
    src_q: str, dst: str, key: str, e: Encoding, inits: list[onnx.TensorProto]
) -> list[onnx.NodeProto]:
    """``src_q`` (``key``'s 8-bit integers) -> DQ -> Q(widened) -> DQ -> ``dst``: the DQ -> Q
    pair the QNN EP fuses into a Convert; its own DQ, so it is the DQ's only consumer."""
    own = f"{key}__scale", f"{key}__zero_point"  # added by key's own _act_qdq
    dq = helper.make_node(
        "DequantizeLinear", [src_q, *own], [dst + "__from"], name=f"{dst}__from__DQ"
    )
    return [dq, *_act_qdq(dst + "__from", dst, dst, widened(e), inits)]


def _rename(
    nodes: list[onnx.NodeProto],
    old: str,
    new: str,
    inputs: bool,
    only: frozenset[str] | None = None,
) -> None:
    """``old`` -> ``new`` among the nodes' inputs (or outputs); ``only``: in these nodes."""
    for n in nodes:
        if only is not None and n.name not in only:
            continue
        names = n.input if inputs else n.output
        for i, x in enumerate(names):
            if x == old:
                names[i] = new


def _act_qdq(
    src: str, dst: str, key: str, e: Encoding, inits: list[onnx.TensorProto]
) -> list[onnx.NodeProto]:
    """QuantizeLinear(src) -> key__q -> DequantizeLinear -> dst, sharing one scale/zero point."""
    elem = _ACT_TYPES.get(e.bitwidth)
    if elem is None:
        raise QdqExportError(
            f"activation {key!r} is {e.bitwidth}-bit; QDQ activations are 8 or 16-bit. "
            "Set quantize.activations.bitwidth to 8 or 16."
        )
    zp = onnx_zero_point(e)
    if not 0 <= zp <= e.steps:
        raise QdqExportError(f"activation {key!r}: offset {e.offset} lies outside its grid")
    scale_name, zp_name = f"{key}__scale", f"{key}__zero_point"
    inits.append(numpy_helper.from_array(np.array(e.scale, np.float32), scale_name))
    inits.append(numpy_helper.from_array(np.array(zp, _NP_OF[elem]), zp_name))
    q = f"{key}{Q_SUFFIX}"
    return [
        helper.make_node("QuantizeLinear", [src, scale_name, zp_name], [q], name=f"{key}__Q"),
        helper.make_node("DequantizeLinear", [q, scale_name, zp_name], [dst], name=f"{key}__DQ"),
    ]


def is_signed_symmetric(e: Encoding) -> bool:
    return e.symmetric and e.offset == -(1 << (e.bitwidth - 1))


def _weight_ints(
    w: NDArray[np.float32], encs: list[Encoding], axis: int, mode: RoundMode
) -> NDArray[np.int64]:
    """``q in [0, 2^bw - 1]`` per element: fieldcal's :func:`quantize`, channel by channel."""
    if len(encs) == 1:
        return quantize(w, encs[0], mode)
    q = np.empty(w.shape, np.int64)
    for c, e in enumerate(encs):
        idx: list[slice | int] = [slice(None)] * w.ndim
        idx[axis] = c
        q[tuple(idx)] = quantize(w[tuple(idx)], e, mode)
    return q


def _weight_dq(
    op: WeightedOp, encs: list[Encoding], mode: RoundMode, inits: list[onnx.TensorProto]
) -> onnx.NodeProto:
    channels = op.weight.shape[op.axis]
    if len(encs) not in (1, channels):
        raise QdqExportError(
            f"weight {op.weight_name!r}: {len(encs)} encodings for {channels} channels"
        )
    bw = encs[0].bitwidth
    if bw not in (8, 16) or len({(e.bitwidth, is_signed_symmetric(e)) for e in encs}) != 1:
        raise QdqExportError(
            f"weight {op.weight_name!r}: {bw}-bit or mixed encodings have no QDQ form; "
            "set quantize.weights.bitwidth to 8 or 16"
        )
    q = _weight_ints(op.weight, encs, op.axis, mode)
    if is_signed_symmetric(encs[0]):
        elem = TensorProto.INT8 if bw == 8 else TensorProto.INT16
        stored, zps = q + encs[0].offset, [0] * len(encs)
    else:
        elem = TensorProto.UINT8 if bw == 8 else TensorProto.UINT16
        stored, zps = q, [onnx_zero_point(e) for e in encs]
    scales = np.asarray([e.scale for e in encs], np.float32)
    zp = np.asarray(zps, _NP_OF[elem])
    name = op.weight_name
    inits.append(numpy_helper.from_array(stored.astype(_NP_OF[elem]), name + INT_SUFFIX))
    inits.append(
        numpy_helper.from_array(scales.reshape(()) if len(encs) == 1 else scales, name + "__scale")
    )
    inits.append(
        numpy_helper.from_array(zp.reshape(()) if len(encs) == 1 else zp, name + "__zero_point")
    )
    ins = [name + INT_SUFFIX, name + "__scale", name + "__zero_point"]
    node = helper.make_node("DequantizeLinear", ins, [name], name=name + "__DQ")
    if len(encs) > 1:
        node.attribute.append(helper.make_attribute("axis", op.axis))
    return node


def bias_scales(
    op: WeightedOp, enc: Encodings, received: Encoding | None = None
) -> NDArray[np.float32]:
    """``float32(s_in) * float32(s_w)`` per output channel, multiplied in float32; ``s_in`` is
    the scale the op receives its input with (``received``: widened, for a 16-bit op reading an
    8-bit tensor; its own encoding by default)."""
    in_enc = received if received is not None else enc.activations.get(op.input)
    if in_enc is None:
        raise QdqExportError(f"{op.node}: its input {op.input!r} has no activation encoding")
    n = op.bias.shape[0]
    w_encs = enc.weights[op.weight_name]
    w_scales = [e.scale for e in w_encs] if len(w_encs) == n else [w_encs[0].scale] * n
    out: NDArray[np.float32] = np.float32(in_enc.scale) * np.asarray(w_scales, np.float32)
    return out


def _bias_ints(b: NDArray[np.float32], grid: NDArray[np.float64]) -> NDArray[np.float64]:
    """Round half away from zero onto ``grid``, saturating at int32 (as the simulation does)."""
    t = b.astype(np.float64) / grid
    q: NDArray[np.float64] = np.clip(
        np.copysign(np.floor(np.abs(t) + 0.5), t), -(2.0**31), 2.0**31 - 1
    )
    return q


def _bias_dq(
    op: WeightedOp, enc: Encodings, mix: Plan, inits: list[onnx.TensorProto]
) -> onnx.NodeProto:
    """fieldcal's bias integers on its grid ``s_in * s_w``; where the op reads its input
    widened (scale ``s_in / 257``), the same values as integers x 257 at the scale it receives."""
    b_encs = enc.biases[op.bias_name]
    if any(e.bitwidth != 32 for e in b_encs):
        raise QdqExportError(
            f"bias {op.bias_name!r} is {b_encs[0].bitwidth}-bit; the QNN EP takes int32 biases "
            "at input scale x weight scale. Set quantize.bias_bitwidth: 32."
        )
    received = mix.received(op.input, op.node, enc)
    scale = bias_scales(op, enc, received)
    grid = np.broadcast_to(np.asarray([e.scale for e in b_encs], np.float64), scale.shape)
    factor = WIDEN if mix.widens(op.input, op.node) else 1
    q = np.clip(_bias_ints(op.bias, grid) * factor, -(2.0**31), 2.0**31 - 1)
    name = op.bias_name
    inits.append(numpy_helper.from_array(q.astype(np.int32), name + INT_SUFFIX))
    inits.append(numpy_helper.from_array(scale, name + "__scale"))
    inits.append(numpy_helper.from_array(np.zeros(scale.shape, np.int32), name + "__zero_point"))
    ins = [name + INT_SUFFIX, name + "__scale", name + "__zero_point"]
    return helper.make_node("DequantizeLinear", ins, [name], name=name + "__DQ", axis=0)


def count_bias_disagreements(view: ModelView, enc: Encodings) -> int:
    """Bias integers that the float32 scale product alone would round differently from
    fieldcal's float64 grid (values within float rounding of a half step). Expected ~0."""
    n = 0
    for op in view.weighted:
        if not op.bias_name:
            continue
        s32 = bias_scales(op, enc).astype(np.float64)
        s64 = np.broadcast_to(
            np.asarray([e.scale for e in enc.biases[op.bias_name]], np.float64), s32.shape
        )
        n += int(np.count_nonzero(_bias_ints(op.bias, s32) != _bias_ints(op.bias, s64)))
    return n


def with_kept_outputs(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """A copy of a QDQ model that also returns ``names`` (DequantizeLinear outputs of kept
    tensors), the original outputs first: the comparable points of a per-layer comparison."""
    return with_outputs(model, list(names))
