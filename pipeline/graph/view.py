"""The ONNX model as QNN sees it: the tensors QNN keeps and the weights after BN folding.

QNN converters fold BatchNormalization into the preceding Conv/ConvTranspose and fuse
Conv(+BN)+ReLU/ReLU6 into one op, so activation encodings apply at the fused op's output only.
:func:`analyze` records that view once; quantize, simulate and evaluate all read it. Load it
from a file with :func:`pipeline.graph.load.load_view`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import numpy_helper

from pipeline.errors import ModelError

_WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_CONSTANT_OPS = {"Constant", "ConstantOfShape", "Shape", "Size"}
_RELU_LIKE = {"Relu", "Clip"}  # Clip only when its lower bound is 0 (ReLU6 and the like)


@dataclass(frozen=True)
class WeightedOp:
    """A Conv/ConvTranspose with its weights as QNN quantizes them (BatchNorm folded in)."""

    node: str  # node name (or its output name when unnamed)
    op_type: str
    input: str  # activation tensor feeding it
    conv_output: str  # what the Conv node produces once BN is folded in (the BN's output)
    output: str  # the tensor QNN keeps after Conv(+BN)+ReLU fusion
    weight_name: str
    bias_name: str  # original bias initializer, or the folded BN's bias; "" when there is none
    weight: NDArray[np.float32]
    bias: NDArray[np.float32]
    axis: int  # output-channel axis of `weight`
    group: int  # Conv/ConvTranspose groups (1 otherwise)
    folded_bn: str | None


@dataclass
class ModelView:
    """What quantize/simulate/evaluate need to know about a model, computed once."""

    model: onnx.ModelProto
    input_name: str
    input_shape: list[int | str]
    input_layout: str  # "NCHW" or "NHWC": how the model takes its image
    outputs: list[str]
    # Every tensor the user's model produces, in topological order (graph input first).
    all_tensors: list[str]
    # The subset QNN quantizes after BN folding and Conv(+BN)+ReLU fusion.
    kept_tensors: list[str]
    producers: dict[str, str]  # tensor -> op type
    weighted: list[WeightedOp] = field(default_factory=list)
    # tensor name -> kept tensor that carries its value in the fused graph (identity for kept).
    fused_into: dict[str, str] = field(default_factory=dict)
    # Kept tensors that are >= 0 by construction (ReLU, Clip from 0): their minimum is never
    # measured by calibration, since tf and symmetric ranges include 0 anyway.
    nonnegative: frozenset[str] = frozenset()
    # Shape of each tensor where shape inference knows its rank (None: a dimension it does not).
    shapes: dict[str, tuple[int | None, ...]] = field(default_factory=dict)
    # sha256 of the file the model was loaded from (load_view); "" for a model built in memory.
    sha256: str = ""


@dataclass(frozen=True)
class _GraphIndex:
    """Lookups over one graph that analysis steps share."""

    inits: dict[str, NDArray[np.generic]]
    # Initializers and Constant node outputs: parameters, not activations.
    consts: dict[str, NDArray[np.generic]]
    consumers: dict[str, list[onnx.NodeProto]]
    producers: dict[str, str]  # tensor -> op type
    outputs: frozenset[str]

    @classmethod
    def of(cls, graph: onnx.GraphProto) -> _GraphIndex:
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        producers: dict[str, str] = {}
        for node in graph.node:
            for t in node.input:
                consumers[t].append(node)
            for t in node.output:
                producers[t] = node.op_type
        consts = dict(inits)
        for node in graph.node:
            if node.op_type == "Constant":
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    consts[node.output[0]] = numpy_helper.to_array(value)
        outputs = frozenset(o.name for o in graph.output)
        return cls(inits, consts, consumers, producers, outputs)

    def single_consumer(self, t: str, op_types: set[str]) -> onnx.NodeProto | None:
        """The one node reading ``t`` when it has one of ``op_types`` and ``t`` is no output."""
        cs = self.consumers.get(t, [])
        if len(cs) == 1 and cs[0].op_type in op_types and t not in self.outputs:
            return cs[0]
        return None


def analyze(model: onnx.ModelProto, fold_batchnorm: bool = True) -> ModelView:
    """The view of ``model`` QNN quantizes: its image input, every activation, the weighted
    ops with BatchNorm folded in (when ``fold_batchnorm``) and the tensors left after
    Conv(+BN)+ReLU fusion."""
    graph = model.graph
    index = _GraphIndex.of(graph)
    inp, shape = _image_input(graph, index.inits)
    non_activation = {t for n in graph.node if n.op_type in _CONSTANT_OPS for t in n.output}
    all_tensors = [inp.name] + [
        t for n in graph.node for t in n.output if t and t not in non_activation
    ]
    fused_into: dict[str, str] = {}
    weighted = [
        op
        for node in graph.node
        if (op := _weighted_op(index, node, fold_batchnorm, fused_into)) is not None
    ]
    kept = [t for t in all_tensors if t not in fused_into]
    for t in kept:
        fused_into[t] = t
    nonnegative = frozenset(
        n.output[0] for n in graph.node if _clamps_at_zero(n, index.consts) and n.output[0] in kept
    )
    return ModelView(
        model=model,
        input_name=inp.name,
        input_shape=shape,
        input_layout="NHWC" if shape[3] == 3 and shape[1] != 3 else "NCHW",
        outputs=[o.name for o in graph.output],
        all_tensors=all_tensors,
        kept_tensors=kept,
        producers=index.producers,
        weighted=weighted,
        fused_into=fused_into,
        nonnegative=nonnegative,
        shapes=_shapes(model),
    )


def _image_input(
    graph: onnx.GraphProto, inits: dict[str, NDArray[np.generic]]
) -> tuple[onnx.ValueInfoProto, list[int | str]]:
    """The graph's one float32 4-D input and its shape (a name for each dynamic dimension)."""
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise ModelError(
            f"fieldcal handles single-input image models; this model has inputs {names}"
        )
    inp = inputs[0]
    shape: list[int | str] = [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
        for d in inp.type.tensor_type.shape.dim
    ]
    if len(shape) != 4:
        raise ModelError(f"input {inp.name!r} has shape {shape}; expected a 4-D image tensor")
    elem = inp.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise ModelError(
            f"input {inp.name!r} is {onnx.TensorProto.DataType.Name(elem)}; expected float32"
        )
    return inp, shape


def _weighted_op(
    index: _GraphIndex, node: onnx.NodeProto, fold_batchnorm: bool, fused_into: dict[str, str]
) -> WeightedOp | None:
    """``node`` as a weighted op QNN quantizes, or None when it is not one. Records in
    ``fused_into`` the tensors that BN folding and ReLU fusion make disappear."""
    inits = index.inits
    if node.op_type not in _WEIGHTED_OPS or len(node.input) < 2 or node.input[1] not in inits:
        return None
    w = inits[node.input[1]].astype(np.float32)
    axis = _channel_axis(node, w)
    if axis is None:
        return None
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    n_out = w.shape[1] * group if node.op_type == "ConvTranspose" else w.shape[axis]
    if node.op_type != "MatMul" and len(node.input) > 2 and node.input[2] in inits:
        b = inits[node.input[2]].astype(np.float32).reshape(-1)
        bias_name = node.input[2]
    else:
        b = np.zeros(n_out, np.float32)
        bias_name = ""
    out = node.output[0]
    folded = None
    bn = (
        index.single_consumer(out, {"BatchNormalization"})
        if fold_batchnorm and node.op_type in ("Conv", "ConvTranspose")
        else None
    )
    if bn is not None and (axis == 0 or group == 1) and all(x in inits for x in bn.input[1:5]):
        w, b = _fold_bn(w, b, axis, bn, inits)
        bias_name = bias_name or bn.input[2]
        fused_into[out] = bn.output[0]
        out = bn.output[0]
        folded = _node_id(bn)
    return WeightedOp(
        node=_node_id(node),
        op_type=node.op_type,
        input=node.input[0],
        conv_output=out,
        output=_fuse_relu(index, out, fused_into),
        weight_name=node.input[1],
        bias_name=bias_name,
        weight=w,
        bias=b,
        axis=axis,
        group=group,
        folded_bn=folded,
    )


def _fold_bn(
    w: NDArray[np.float32],
    b: NDArray[np.float32],
    axis: int,
    bn: onnx.NodeProto,
    inits: dict[str, NDArray[np.generic]],
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Weight and bias with BatchNormalization ``bn`` folded in, computed in float64:
    ``k = gamma / sqrt(var + eps)``, ``w' = w * k`` along ``axis``, ``b' = (b - mean) * k + beta``.
    """
    eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
    gamma, beta, mean, var = (inits[x].astype(np.float64) for x in bn.input[1:5])
    k = gamma / np.sqrt(var + eps)
    shape_k = [1] * w.ndim
    shape_k[axis] = -1
    w = (w.astype(np.float64) * k.reshape(shape_k)).astype(np.float32)
    b = ((b.astype(np.float64) - mean) * k + beta).astype(np.float32)
    return w, b


def _fuse_relu(index: _GraphIndex, out: str, fused_into: dict[str, str]) -> str:
    """The tensor QNN keeps for a weighted op producing ``out``: the output of a ReLU (or a Clip
    from 0) that alone reads ``out``, else ``out`` itself. Tensors fused into ``out`` earlier
    (a folded BN's input) move to the ReLU's output too."""
    act = index.single_consumer(out, _RELU_LIKE)
    if act is None or not _clamps_at_zero(act, index.consts):
        return out
    fused: str = act.output[0]
    fused_into[out] = fused
    for k_, v_ in list(fused_into.items()):
        if v_ == out:
            fused_into[k_] = fused
    return fused


def _channel_axis(node: onnx.NodeProto, w: NDArray[np.float32]) -> int | None:
    """Output-channel axis of a weight (docs §5.1): Conv OIHW -> 0, ConvTranspose IOHW -> 1,
    Gemm with transB -> 0 else 1, MatMul (K, N) -> 1. None: not a weight fieldcal quantizes."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if w.ndim != 2:
        return None
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return 1  # MatMul x @ W


def _node_id(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def _clamps_at_zero(node: onnx.NodeProto, consts: dict[str, NDArray[np.generic]]) -> bool:
    """Relu, or Clip whose lower bound is exactly 0 (ReLU6 and the like)."""
    if node.op_type == "Relu":
        return True
    if node.op_type != "Clip":
        return False
    lo = consts.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    lo_attr = next((a.f for a in node.attribute if a.name == "min"), None)
    lower = float(lo) if lo is not None else lo_attr
    return lower == 0.0


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a model onnx cannot infer still runs; shapes are only a speed hint
        return {}
    g = inferred.graph
    return {
        v.name: tuple(
            d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim
        )
        for v in list(g.value_info) + list(g.input) + list(g.output)
        if v.type.tensor_type.HasField("shape")
    }


def check_input_spec(view: ModelView, height: int, width: int) -> None:
    """Fail before any work when the params' input size contradicts a fixed model dimension."""
    if view.input_layout == "NHWC":
        _, h, w, c = view.input_shape
        want: list[int | str] = [view.input_shape[0], height, width, 3]
    else:
        _, c, h, w = view.input_shape
        want = [view.input_shape[0], 3, height, width]
    for got_d, want_d, what in ((c, 3, "channels"), (h, height, "height"), (w, width, "width")):
        if isinstance(got_d, int) and got_d > 0 and got_d != want_d:
            raise ModelError(
                f"model input {view.input_name!r} has shape {view.input_shape} "
                f"({view.input_layout}) but params ask for {want} ({what} differs); "
                "change tensors.height/width or the model"
            )
