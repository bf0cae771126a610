"""A quantized model as an ONNX graph onnxruntime can run, in QNN's convention.

Weights and biases are quantized and dequantized in numpy (exact rounding control); every kept
activation tensor gets a fake-quant chain in the graph::

    y = scale * (floor(clip(x, enc_min, enc_max) / scale + (0.5 - offset)) + offset)

which is ``round half away from zero`` because the clipped ``x / scale - offset`` is >= 0
(``round_mode="half_even"`` uses ONNX ``Round`` instead). No QuantizeLinear is used: its rounding
is half-to-even and onnxruntime may fuse it into integer kernels (design notes).
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import helper, numpy_helper

from pipeline.graph.view import ModelView
from pipeline.quantization.encoding import (
    Encoding,
    RoundMode,
    dequantize,
    fake_quant_int32_bias,
    fake_quant_per_channel,
    quantize,
)

# Encodings lived here; re-exported until the branches importing it from here are merged.
from pipeline.quantization.encodings import Encodings as Encodings


@dataclass(frozen=True)
class SimOptions:
    quantize_weights: bool = True
    quantize_activations: bool = True
    round_mode: RoundMode = "half_away"
    # Node ids or kept tensor names left in float (their weights and their output activation).
    float_layers: frozenset[str] = frozenset()


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
    float_layers: Collection[str] = options.float_layers
    ops = {op.node: op for op in view.weighted}
    removed_bn = {op.folded_bn for op in view.weighted if op.folded_bn}
    new_inits: list[onnx.TensorProto] = []

    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        node_id = node.name or node.output[0]
        if node_id in removed_bn:
            continue
        op = ops.get(node_id)
        if op is not None:
            keep_float = not options.quantize_weights or node_id in float_layers
            keep_float = keep_float or op.output in float_layers
            w = op.weight
            b = op.bias
            if not keep_float:
                key = (op.weight_name, options.round_mode)
                cached = params_cache.get(key) if params_cache is not None else None
                if cached is None:
                    w_enc = _expand(enc.weights[op.weight_name], w.shape[op.axis])
                    cached = (
                        fake_quant_per_channel(w, w_enc, op.axis, options.round_mode),
                        _fake_quant_bias(b, biases[op.bias_name], options.round_mode)
                        if op.bias_name
                        else b,
                    )
                    if params_cache is not None:
                        params_cache[key] = cached
                w, b = cached
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
            n.output[0] = op.conv_output  # the BN's output when BN was folded in
            new_nodes.append(n)
        else:
            new_nodes.append(node)

    # Activation fake-quant chains at every kept tensor.
    fq_nodes: list[onnx.NodeProto] = []
    rename: dict[str, str] = {}
    if options.quantize_activations:
        for t in view.kept_tensors:
            e = enc.activations.get(t)
            if e is None or t in float_layers:
                continue
            if t == view.input_name:
                rename[t] = f"{t}__q"
                fq_nodes += _fq_nodes(t, f"{t}__q", e, options.round_mode, new_inits)
            else:
                rename[t] = f"{t}__f"
                fq_nodes += _fq_nodes(f"{t}__f", t, e, options.round_mode, new_inits)
    for n in new_nodes:
        for i, o in enumerate(n.output):
            if o in rename and o != view.input_name:
                n.output[i] = rename[o]
        if view.input_name in rename:
            for i, x in enumerate(n.input):
                if x == view.input_name:
                    n.input[i] = rename[x]

    used = {x for n in new_nodes for x in n.input}
    kept_inits = [i for i in graph.initializer if i.name in used]
    del graph.node[:]
    graph.node.extend(_toposort(fq_nodes + new_nodes, view.input_name, new_inits + kept_inits))
    del graph.initializer[:]
    graph.initializer.extend(kept_inits + new_inits)
    return model


def _expand(encs: list[Encoding], channels: int) -> list[Encoding]:
    return encs if len(encs) == channels else encs * channels


def _toposort(
    nodes: list[onnx.NodeProto], graph_input: str, inits: list[onnx.TensorProto]
) -> list[onnx.NodeProto]:
    """Kahn's algorithm, always taking the earliest ready node in the given order, so the result
    is deterministic (and the given order itself when it is already topological)."""
    available = {graph_input, ""} | {i.name for i in inits}
    waiting_on: dict[str, list[int]] = {}
    missing = [0] * len(nodes)
    for i, n in enumerate(nodes):
        for x in set(n.input) - available:
            waiting_on.setdefault(x, []).append(i)
            missing[i] += 1
    ready = [i for i, m in enumerate(missing) if m == 0]
    heapq.heapify(ready)
    ordered: list[onnx.NodeProto] = []
    while ready:
        i = heapq.heappop(ready)
        ordered.append(nodes[i])
        for out in nodes[i].output:
            for j in waiting_on.pop(out, []):
                missing[j] -= 1
                if missing[j] == 0:
                    heapq.heappush(ready, j)
    if len(ordered) < len(nodes):
        unresolved = sorted(waiting_on)
        raise AssertionError(f"graph has unresolved inputs {unresolved[:5]}")
    return ordered


def build_layerwise_model(
    view: ModelView,
    enc: Encodings,
    round_mode: RoundMode = "half_away",
    quantize_outputs: bool = True,
    params_cache: ParamsCache | None = None,
) -> tuple[onnx.ModelProto, dict[str, str]]:
    """Float model plus, for every kept tensor, its producer fed *float* inputs (spec §8.3,
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
    q_inits = {i.name for i in q_model.graph.initializer}
    for init in q_model.graph.initializer:
        clone = onnx.TensorProto()
        clone.CopyFrom(init)
        clone.name = f"lwq__{init.name}"
        graph.initializer.append(clone)
    activations = set(view.all_tensors)
    new_nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    quantized_inputs: dict[str, str] = {}

    def quantized_input(x: str) -> str:
        if x not in quantized_inputs:
            carrier = view.fused_into.get(x, x)
            e = enc.activations.get(carrier)
            if e is None:
                quantized_inputs[x] = x
            else:
                quantized_inputs[x] = f"{x}__lwin"
                new_nodes.extend(_fq_nodes(x, f"{x}__lwin", e, round_mode, new_inits))
        return quantized_inputs[x]

    group_of = {}
    for node in q_model.graph.node:
        for o in node.output:
            if o in activations:
                group_of[o] = view.fused_into.get(o, o)
    outputs: dict[str, str] = {}
    for node in q_model.graph.node:
        if not node.output or node.output[0] not in group_of:
            continue
        group = group_of[node.output[0]]
        clone = onnx.NodeProto()
        clone.CopyFrom(node)
        clone.name = f"{node.name or node.output[0]}__lw"
        for i, x in enumerate(node.input):
            if x in q_inits:
                clone.input[i] = f"lwq__{x}"
            elif group_of.get(x) == group:  # produced inside the same fused group
                clone.input[i] = f"{x}__lw"
            elif x in activations:
                clone.input[i] = quantized_input(x)
        for i, o in enumerate(node.output):
            clone.output[i] = f"{o}__lw"
        new_nodes.append(clone)
        if node.output[0] == group:
            e = enc.activations.get(group)
            if e is not None and not quantize_outputs:
                outputs[group] = f"{group}__lw"
            elif e is not None:
                new_nodes.extend(
                    _fq_nodes(f"{group}__lw", f"{group}__lwq", e, round_mode, new_inits)
                )
                outputs[group] = f"{group}__lwq"
    graph.initializer.extend(new_inits)
    all_inits = list(graph.initializer)
    nodes = _toposort(list(graph.node) + new_nodes, view.input_name, all_inits)
    del graph.node[:]
    graph.node.extend(nodes)
    for name in outputs.values():
        graph.output.append(helper.make_empty_tensor_value_info(name))
    return model, outputs
