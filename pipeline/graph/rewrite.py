"""Graph rewrites for calibration and evaluation: extra outputs, teacher forcing, in-graph
range reductions."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also returns ``names`` (the original outputs stay first)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    existing = {o.name for o in m.graph.output}
    for name in names:
        if name not in existing:
            m.graph.output.append(helper.make_empty_tensor_value_info(name))
            existing.add(name)
    return m


FORCED_SUFFIX = "__in"


def teacher_forced(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose every consumer of a tensor in ``names`` reads a new graph
    input ``<name>__in`` instead, and whose outputs are ``names``: fed another backend's
    values of those tensors, each producer is judged on that backend's inputs alone."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g, wanted = m.graph, set(names)
    for node in g.node:
        for i, x in enumerate(node.input):
            if x in wanted:
                node.input[i] = x + FORCED_SUFFIX
    g.input.extend(
        helper.make_tensor_value_info(n + FORCED_SUFFIX, onnx.TensorProto.FLOAT, None)
        for n in names
    )
    del g.output[:]
    g.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    del g.value_info[:]
    return m


def with_range_outputs(
    model: onnx.ModelProto,
    names: list[str],
    nonnegative: frozenset[str] = frozenset(),
    shapes: Mapping[str, tuple[int | None, ...]] | None = None,
) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` that returns, for each tensor in ``names``, its per-sample max as a
    (B,) output ``<name>__max`` and, unless the tensor is in ``nonnegative``, its min as
    ``<name>__min``, reduced inside onnxruntime so no activation is copied out.

    NaNs: onnxruntime's max and min skip a NaN anywhere but at the first element, a sum never
    does. So each tensor with a min also returns its sum, ``<name>__nan``, NaN where the tensor
    holds a NaN (or +inf beside -inf, which the caller tells apart). Nonnegative tensors need
    none: they are ReLU or Clip outputs, onnxruntime computes both as max(x, 0), which maps a
    NaN to 0, and a NaN that reached their input came from a tensor that has a sum (the model's
    input, or the output of an op that can make one from numbers: Log, Div, Sqrt ...). The one
    way past that is a convolution fused with its ReLU overflowing to inf - inf inside itself.

    Each reduction sits right after its producer, while the tensor is still in cache. The max
    of a 4-D tensor (most of a CNN's activations) is a GlobalMaxPool, which onnxruntime runs on
    its blocked (NCHWc) layout, vectorised and threaded over channels, then a max over the
    (B, C) result. The min of a 4-D tensor with a known channel count is minus the max of its
    negation, a depthwise 1x1 convolution with weight -1 (exact: one product by -1 added to
    0), which also stays in the blocked layout. Other tensors use Flatten (keeps the batch axis)
    and ReduceMin/ReduceMax, which need the plain layout: onnxruntime reorders the whole tensor
    first. What each choice costs: benchmarks/README.md, "The range graph".
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset >= 13:
        g.initializer.append(numpy_helper.from_array(np.array([1], np.int64), _AXIS1))
    rr = _RangeReductions(g, opset, nonnegative, shapes or {})
    wanted = set(names)
    ordered = [n for name in names if name in {i.name for i in g.input} for n in rr.of(name)]
    for node in g.node:
        ordered.append(node)
        ordered += [r for t in node.output if t in wanted for r in rr.of(t)]
    del g.node[:]
    g.node.extend(ordered)
    outs = [
        f"{name}__{s}"
        for name in names
        for s in ("min", "max", "nan")
        if s == "max" or name not in nonnegative
    ]
    for out in outs:
        g.output.append(helper.make_empty_tensor_value_info(out))
    return m, outs


_AXIS1 = "__fieldcal_axis1"  # the int64 [1] initializer Reduce* ops take as axes from opset 13/18


@dataclass(frozen=True)
class _RangeReductions:
    """Builds the nodes that reduce one tensor to its per-sample min, max and sum (see
    :func:`with_range_outputs`); adds the -1 weights the negation needs to ``graph``."""

    graph: onnx.GraphProto
    opset: int
    nonnegative: frozenset[str]
    shapes: Mapping[str, tuple[int | None, ...]]

    def reduce(self, op: str, src: str, out: str) -> onnx.NodeProto:
        """``op`` (ReduceMin/Max/Sum) over axis 1 of a (B, K) tensor, without keepdims."""
        if self.opset >= (13 if op == "ReduceSum" else 18):  # when axes became an input
            return helper.make_node(op, [src, _AXIS1], [out], keepdims=0)
        return helper.make_node(op, [src], [out], axes=[1], keepdims=0)

    def pooled(self, pool: str, reduce_op: str, src: str, out: str) -> list[onnx.NodeProto]:
        """``pool`` (GlobalMaxPool / GlobalAveragePool) over H, W, then ``reduce_op`` over C."""
        return [
            helper.make_node(pool, [src], [f"{src}__{pool}"]),
            helper.make_node("Flatten", [f"{src}__{pool}"], [f"{src}__{pool}_flat"], axis=1),
            self.reduce(reduce_op, f"{src}__{pool}_flat", out),
        ]

    def of(self, name: str) -> list[onnx.NodeProto]:
        """The reduction nodes for tensor ``name``: ``__max``, and ``__min``/``__nan`` unless
        it is nonnegative; pooled in the blocked layout for 4-D tensors where possible."""
        shape = self.shapes.get(name, ())
        signed = name not in self.nonnegative
        channels = shape[1] if len(shape) == 4 else None
        if len(shape) == 4 and (channels or not signed):
            nodes = self.pooled("GlobalMaxPool", "ReduceMax", name, f"{name}__max")
            if signed and channels:
                nodes += self.negated_min(name, channels)
                nodes += self.pooled("GlobalAveragePool", "ReduceSum", name, f"{name}__nan")
            return nodes
        flat = f"{name}__flat"
        nodes = [helper.make_node("Flatten", [name], [flat], axis=1)]
        if signed:
            nodes.append(self.reduce("ReduceMin", flat, f"{name}__min"))
            nodes.append(self.reduce("ReduceSum", flat, f"{name}__nan"))
        nodes.append(self.reduce("ReduceMax", flat, f"{name}__max"))
        return nodes

    def negated_min(self, name: str, channels: int) -> list[onnx.NodeProto]:
        """``<name>__min`` of a (B, C, H, W) tensor as minus the pooled max of its negation,
        a depthwise 1x1 convolution with weight -1."""
        w, neg = f"{name}__negw", f"{name}__neg"
        self.graph.initializer.append(
            numpy_helper.from_array(np.full((channels, 1, 1, 1), -1, np.float32), w)
        )
        nodes = [helper.make_node("Conv", [name, w], [neg], group=channels)]
        nodes += self.pooled("GlobalMaxPool", "ReduceMax", neg, f"{neg}__max")
        nodes.append(helper.make_node("Neg", [f"{neg}__max"], [f"{name}__min"]))
        return nodes


def toposort(
    nodes: list[onnx.NodeProto], graph_input: str, inits: Iterable[onnx.TensorProto]
) -> list[onnx.NodeProto]:
    """``nodes`` in an order where every input is produced first (the graph input ``graph_input``
    and the initializers ``inits`` are given). Kahn's algorithm, always taking the earliest ready
    node in the given order, so the result is deterministic (and the given order itself when it
    is already topological)."""
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
