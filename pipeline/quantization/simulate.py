"""A quantized model as an ONNX graph onnxruntime can run, in QNN's convention.

Weights and biases are quantized and dequantized in numpy (exact rounding control); every kept
activation tensor gets a fake-quant chain in the graph::

    y = scale * (floor(clip(x, enc_min, enc_max) / scale + (0.5 - offset)) + offset)

which is ``round half away from zero`` because the clipped ``x / scale - offset`` is >= 0
(``round_mode="half_even"`` uses ONNX ``Round`` instead). No QuantizeLinear is used: its rounding
is half-to-even and onnxruntime may fuse it into integer kernels (design notes).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import helper, numpy_helper

from pipeline.graph.rewrite import toposort
from pipeline.graph.view import ModelView, WeightedOp
from pipeline.quantization.encoding import (
    Encoding,
    RoundMode,
    dequantize,
    fake_quant_int32_bias,
    fake_quant_per_channel,
    quantize,
)
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.htp_add import rescale_adds
from pipeline.quantization.htp_requant import accumulator_shift
from pipeline.quantization.mixed import plan, widened

Requant = Literal["reference", "htp"]


@dataclass(frozen=True)
class SimOptions:
    quantize_weights: bool = True
    quantize_activations: bool = True
    round_mode: RoundMode = "half_away"
    # Node ids or kept tensor names left in float (their weights and their output activation).
    float_layers: frozenset[str] = frozenset()
    # "htp": 8-bit Conv/ConvTranspose groups and Adds requantize as the QNN HTP does
    # (pipeline/quantization/htp_requant.py, htp_add.py; docs §8.5); "reference": exact (§8.1).
    requant: Requant = "reference"


def _fake_quant_bias(
    b: NDArray[np.float32], encs: list[Encoding], mode: RoundMode
) -> NDArray[np.float32]:
    if encs and encs[0].bitwidth == 32:
        return fake_quant_int32_bias(b, encs if len(encs) == b.shape[0] else encs * b.shape[0])
    return dequantize(quantize(b, encs[0], mode), encs[0]).astype(np.float32)


def _fq_nodes(
    src: str, dst: str, enc: Encoding, mode: RoundMode, inits: list[onnx.TensorProto]
) -> list[onnx.NodeProto]:
    p = f"{dst}__fq"

    def const(name: str, value: float) -> str:
        inits.append(numpy_helper.from_array(np.array(value, np.float32), f"{p}_{name}"))
        return f"{p}_{name}"

    lo, hi = const("min", enc.min), const("max", enc.max)
    scale = const("scale", enc.scale)
    off = const("offset", float(enc.offset))
    nodes = [
        helper.make_node("Clip", [src, lo, hi], [f"{p}_clip"], name=f"{p}_clip"),
        helper.make_node("Div", [f"{p}_clip", scale], [f"{p}_t"], name=f"{p}_div"),
    ]
    if mode == "half_away":
        half = const("half_minus_offset", 0.5 - enc.offset)
        nodes += [
            helper.make_node("Add", [f"{p}_t", half], [f"{p}_th"], name=f"{p}_add"),
            helper.make_node("Floor", [f"{p}_th"], [f"{p}_q"], name=f"{p}_floor"),
        ]
    else:
        neg = const("neg_offset", -float(enc.offset))
        nodes += [
            helper.make_node("Add", [f"{p}_t", neg], [f"{p}_tq"], name=f"{p}_sub"),
            helper.make_node("Round", [f"{p}_tq"], [f"{p}_q"], name=f"{p}_round"),
        ]
    nodes += [
        helper.make_node("Add", [f"{p}_q", off], [f"{p}_qo"], name=f"{p}_addoff"),
        helper.make_node("Mul", [f"{p}_qo", scale], [dst], name=f"{p}_mul"),
    ]
    return nodes


# (weight name, round mode) -> the weight and bias fake-quantized (bias: as given if none)
ParamsCache = dict[tuple[str, str], tuple[NDArray[np.float32], NDArray[np.float32]]]


def build_quantized_model(
    view: ModelView,
    enc: Encodings,
    options: SimOptions = SimOptions(),
    biases: Mapping[str, list[Encoding]] | None = None,
    params_cache: ParamsCache | None = None,
) -> onnx.ModelProto:
    """The view's model with BN folded and weights, biases and activations fake-quantized.

    Tensor names of the kept tensors are unchanged, so outputs can be compared by name with the
    float model. ``params_cache``, shared by the builds of one (view, encodings, biases), keeps
    each fake-quantized weight and bias for the next build instead of computing it again.
    """
    biases = enc.biases if biases is None else biases
    model = onnx.ModelProto()
    model.CopyFrom(view.model)
    graph = model.graph
    ops = {op.node: op for op in view.weighted}
    removed_bn = {op.folded_bn for op in view.weighted if op.folded_bn}
    new_inits: list[onnx.TensorProto] = []
    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        node_id = node.name or node.output[0]
        if node_id in removed_bn:
            continue
        op = ops.get(node_id)
        if op is None:
            new_nodes.append(node)
            continue
        w, b = _sim_params(op, enc, biases, options, params_cache)
        new_nodes.append(_with_params(node, op, w, b, new_inits))
    fq_nodes, rename = _activation_chains(view, enc, options, new_inits)
    _rename_tensors(new_nodes, rename, view.input_name)
    if options.requant == "htp" and options.quantize_weights and options.quantize_activations:
        new_nodes += accumulator_shift(view, enc, new_nodes, new_inits, options.float_layers)
        new_nodes = rescale_adds(view, enc, new_nodes, new_inits, options.float_layers)
    used = {x for n in new_nodes for x in n.input}
    kept_inits = [i for i in graph.initializer if i.name in used]
    del graph.node[:]
    graph.node.extend(toposort(fq_nodes + new_nodes, view.input_name, new_inits + kept_inits))
    del graph.initializer[:]
    graph.initializer.extend(kept_inits + new_inits)
    return model


def _sim_params(
    op: WeightedOp,
    enc: Encodings,
    biases: Mapping[str, list[Encoding]],
    options: SimOptions,
    params_cache: ParamsCache | None,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``op``'s weight and bias as the simulation uses them: fake-quantized (from
    ``params_cache`` when it has them), or float where the options keep the layer float."""
    float_layers: Collection[str] = options.float_layers
    keep_float = not options.quantize_weights or op.node in float_layers
    if keep_float or op.output in float_layers:
        return op.weight, op.bias
    key = (op.weight_name, options.round_mode)
    cached = params_cache.get(key) if params_cache is not None else None
    if cached is None:
        w_enc = _expand(enc.weights[op.weight_name], op.weight.shape[op.axis])
        cached = (
            fake_quant_per_channel(op.weight, w_enc, op.axis, options.round_mode),
            _fake_quant_bias(op.bias, biases[op.bias_name], options.round_mode)
            if op.bias_name
            else op.bias,
        )
        if params_cache is not None:
            params_cache[key] = cached
    return cached


def _with_params(
    node: onnx.NodeProto,
    op: WeightedOp,
    w: NDArray[np.float32],
    b: NDArray[np.float32],
    new_inits: list[onnx.TensorProto],
) -> onnx.NodeProto:
    """A copy of weighted ``node`` reading weight ``w`` and bias ``b`` (added to ``new_inits``
    as ``<name>__sim``) and writing ``op.conv_output`` (the BN's output when BN was folded)."""
    w_name = f"{op.weight_name}__sim"
    new_inits.append(numpy_helper.from_array(w, w_name))
    n = onnx.NodeProto()
    n.CopyFrom(node)
    del n.input[:]
    n.input.extend([node.input[0], w_name])
    if op.bias_name:
        b_name = f"{op.bias_name}__sim"
        new_inits.append(numpy_helper.from_array(b, b_name))
        n.input.append(b_name)
    n.output[0] = op.conv_output
    return n


def _activation_chains(
    view: ModelView, enc: Encodings, options: SimOptions, new_inits: list[onnx.TensorProto]
) -> tuple[list[onnx.NodeProto], dict[str, str]]:
    """Fake-quant chains at every kept tensor with an encoding (none left float), and the
    renames they need: the producer of ``t`` writes ``t__f`` and the chain writes ``t``; the
    graph input ``x`` stays and its consumers read the chain's ``x__q``. An 8-bit tensor that
    a 16-bit op writes (:func:`pipeline.quantization.mixed.plan`) is rounded twice, first on
    its widened grid, as the HTP does; an 8-bit tensor a 16-bit op reads needs nothing: the
    widening is exact."""
    fq_nodes: list[onnx.NodeProto] = []
    rename: dict[str, str] = {}
    if not options.quantize_activations:
        return fq_nodes, rename
    writes = plan(view, enc).writes
    for t in view.kept_tensors:
        e = enc.activations.get(t)
        if e is None or t in options.float_layers:
            continue
        if t == view.input_name:
            rename[t] = f"{t}__q"
            fq_nodes += _fq_nodes(t, f"{t}__q", e, options.round_mode, new_inits)
        elif t in writes:  # a 16-bit op writes it widened, a Convert narrows it (mixed.py)
            rename[t] = f"{t}__f"
            w = widened(e)
            fq_nodes += _fq_nodes(f"{t}__f", f"{t}__w16", w, options.round_mode, new_inits)
            fq_nodes += _fq_nodes(f"{t}__w16", t, e, options.round_mode, new_inits)
        else:
            rename[t] = f"{t}__f"
            fq_nodes += _fq_nodes(f"{t}__f", t, e, options.round_mode, new_inits)
    return fq_nodes, rename


def _rename_tensors(nodes: list[onnx.NodeProto], rename: dict[str, str], graph_input: str) -> None:
    """Outputs renamed as ``rename`` says; inputs only for the graph input (in place)."""
    for n in nodes:
        for i, o in enumerate(n.output):
            if o in rename and o != graph_input:
                n.output[i] = rename[o]
        if graph_input in rename:
            for i, x in enumerate(n.input):
                if x == graph_input:
                    n.input[i] = rename[x]


def _expand(encs: list[Encoding], channels: int) -> list[Encoding]:
    return encs if len(encs) == channels else encs * channels


def build_layerwise_model(
    view: ModelView,
    enc: Encodings,
    round_mode: RoundMode = "half_away",
    quantize_outputs: bool = True,
    params_cache: ParamsCache | None = None,
) -> tuple[onnx.ModelProto, dict[str, str]]:
    """Float model plus, for every kept tensor, its producer fed *float* inputs (docs §8.3,
    QNN's "layerwise"): each fused group (Conv[+BN]+ReLU, Add, Sigmoid ...) is cloned with
    quantized weights, its activation inputs fake-quantized from the float tensors and its
    output fake-quantized. One run gives every layer's own error, free of upstream error.

    ``quantize_outputs=False`` leaves the clones' outputs unquantized, for a consumer that
    applies the output's fake-quant itself (evaluate does, inside its comparison pass:
    :func:`pipeline.native.kernels.compare`); nothing in the graph reads them.

    Returns the model and {kept tensor: name of its layerwise output}.
    """
    float_model = build_quantized_model(
        view, enc, SimOptions(quantize_weights=False, quantize_activations=False)
    )
    q_model = build_quantized_model(
        view,
        enc,
        SimOptions(quantize_activations=False, round_mode=round_mode),
        params_cache=params_cache,
    )
    model = onnx.ModelProto()
    model.CopyFrom(float_model)
    graph = model.graph
    for init in q_model.graph.initializer:
        clone = onnx.TensorProto()
        clone.CopyFrom(init)
        clone.name = f"lwq__{init.name}"
        graph.initializer.append(clone)
    clones = _LayerwiseClones(view, enc, round_mode, q_model)
    for node in q_model.graph.node:
        if node.output and node.output[0] in clones.group_of:
            clones.add(node, quantize_outputs)
    graph.initializer.extend(clones.new_inits)
    all_inits = list(graph.initializer)
    nodes = toposort(list(graph.node) + clones.new_nodes, view.input_name, all_inits)
    del graph.node[:]
    graph.node.extend(nodes)
    for name in clones.outputs.values():
        graph.output.append(helper.make_empty_tensor_value_info(name))
    return model, clones.outputs


class _LayerwiseClones:
    """The layerwise copies of a weights-quantized model's nodes (see
    :func:`build_layerwise_model`): each node of a fused group is cloned as ``<name>__lw``,
    reading the quantized weights ``lwq__<init>``, its group's other clones, and the float
    activations fake-quantized once each (``<tensor>__lwin``)."""

    def __init__(
        self, view: ModelView, enc: Encodings, round_mode: RoundMode, q_model: onnx.ModelProto
    ) -> None:
        self.view, self.enc, self.round_mode = view, enc, round_mode
        self.q_inits = {i.name for i in q_model.graph.initializer}
        self.activations = set(view.all_tensors)
        # activation -> the kept tensor of its fused group
        self.group_of = {
            o: view.fused_into.get(o, o)
            for node in q_model.graph.node
            for o in node.output
            if o in self.activations
        }
        self.new_nodes: list[onnx.NodeProto] = []
        self.new_inits: list[onnx.TensorProto] = []
        self.quantized_inputs: dict[str, str] = {}
        self.outputs: dict[str, str] = {}  # kept tensor -> its layerwise output

    def quantized_input(self, x: str) -> str:
        """Float activation ``x`` fake-quantized with its carrier's encoding (once)."""
        if x not in self.quantized_inputs:
            carrier = self.view.fused_into.get(x, x)
            e = self.enc.activations.get(carrier)
            if e is None:
                self.quantized_inputs[x] = x
            else:
                self.quantized_inputs[x] = f"{x}__lwin"
                self.new_nodes.extend(
                    _fq_nodes(x, f"{x}__lwin", e, self.round_mode, self.new_inits)
                )
        return self.quantized_inputs[x]

    def add(self, node: onnx.NodeProto, quantize_outputs: bool) -> None:
        """Clone ``node``; at its group's kept tensor, record the layerwise output (after a
        fake-quant chain when ``quantize_outputs``)."""
        group = self.group_of[node.output[0]]
        clone = onnx.NodeProto()
        clone.CopyFrom(node)
        clone.name = f"{node.name or node.output[0]}__lw"
        for i, x in enumerate(node.input):
            if x in self.q_inits:
                clone.input[i] = f"lwq__{x}"
            elif self.group_of.get(x) == group:  # produced inside the same fused group
                clone.input[i] = f"{x}__lw"
            elif x in self.activations:
                clone.input[i] = self.quantized_input(x)
        for i, o in enumerate(node.output):
            clone.output[i] = f"{o}__lw"
        self.new_nodes.append(clone)
        e = self.enc.activations.get(group)
        if node.output[0] != group or e is None:
            return
        if not quantize_outputs:
            self.outputs[group] = f"{group}__lw"
            return
        self.new_nodes.extend(
            _fq_nodes(f"{group}__lw", f"{group}__lwq", e, self.round_mode, self.new_inits)
        )
        self.outputs[group] = f"{group}__lwq"
