"""The peer of fieldcal's evaluation: onnxruntime's own per-layer debugger on a QDQ model.

``onnxruntime.quantization.qdq_loss_debug`` is what a user without fieldcal would run to find
where a quantized model loses accuracy. As its module docstring documents it:

1. ``modify_model_output_intermediate_tensors`` on the float model and on the QDQ model: every
   float tensor (input or output of any node) becomes a model output;
2. ``collect_activations`` on each augmented model with a ``CalibrationDataReader`` over the
   images (its default session options: graph optimisations off, CPU); it keeps every
   tensor of every image in memory;
3. ``create_activation_matching(qdq, float)``: per quantized activation, the QDQ model's values
   before and after its QuantizeLinear/DequantizeLinear pair and the float model's;
   ``create_weight_matching(float, qdq)``: each float weight beside its dequantized one;
4. ``compute_activation_error`` (per activation: ``xmodel_err``, the SQNR of the float tensor
   against the QDQ model's, and ``qdq_err``, the SQNR across its own QDQ pair) and
   ``compute_weight_error``.

The QDQ model is fieldcal's own export (:func:`pipeline.quantization.qdq.export_qdq`, what the
quantize stage writes to ``out/quantize/model.qdq.onnx``), so both sides evaluate the same
quantization. ``qdq_loss_debug`` pairs tensors by the names onnxruntime's quantizer gives them,
so :func:`ort_named` renames that export's tensors to those names (nothing else changes).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from pipeline.params import TensorsParams
from pipeline.quantization.qdq import DQ_SUFFIX, FLOAT_SUFFIX, INT_SUFFIX

# onnxruntime.quantization.quant_utils' names, as qdq_loss_debug matches them
ORT_QUANT_INPUT = "_QuantizeLinear_Input"  # producer output feeding a QuantizeLinear
ORT_DQ_OUTPUT = "_DequantizeLinear_Output"  # DequantizeLinear output of a graph input
ORT_INT = "_quantized"  # integer initializer of a weight or bias


def ort_named(qdq: onnx.ModelProto, input_name: str) -> onnx.ModelProto:
    """A copy of fieldcal's QDQ model with onnxruntime's quantizer names.

    fieldcal: ``t__f -> Q -> t__q -> DQ -> t``, graph input ``x -> Q -> DQ -> x__dq``, integer
    params ``w__quantized``. onnxruntime: ``t_QuantizeLinear_Input -> Q -> DQ -> t``,
    ``x -> Q -> DQ -> x_DequantizeLinear_Output``, ``w_quantized``. Every kept tensor keeps its
    name, so it still matches the float model's.
    """
    out = onnx.ModelProto()
    out.CopyFrom(qdq)
    graph = out.graph
    new = {input_name + DQ_SUFFIX: input_name + ORT_DQ_OUTPUT}
    for n in graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0].endswith(FLOAT_SUFFIX):
            new[n.input[0]] = n.input[0].removesuffix(FLOAT_SUFFIX) + ORT_QUANT_INPUT
    for init in graph.initializer:
        if init.name.endswith(INT_SUFFIX):
            new[init.name] = init.name.removesuffix(INT_SUFFIX) + ORT_INT
            init.name = new[init.name]
    for n in graph.node:
        for names in (n.input, n.output):
            for i, x in enumerate(names):
                names[i] = new.get(x, x)
    onnx.checker.check_model(out)
    return out


@dataclass(frozen=True)
class PeerResult:
    """What the peer gives, and the seconds of each of its steps."""

    xmodel_sqnr: dict[str, float]  # per quantized activation: float vs QDQ model, dB
    qdq_sqnr: dict[str, float]  # per quantized activation: across its own QDQ pair, dB
    weight_sqnr: dict[str, float]  # per weight and bias: float vs dequantized, dB
    seconds: dict[str, float]


def run_peer(
    float_model: Path, qdq_model: Path, raws: Sequence[Path], tp: TensorsParams, work: Path
) -> PeerResult:
    """``qdq_loss_debug`` over the images ``raws``, as its docstring documents it; the augmented
    models are written into ``work``."""
    from onnxruntime.quantization import qdq_loss_debug as dbg

    from benchmarks.calibration import RawReader

    input_name = onnx.load(str(float_model), load_external_data=False).graph.input[0].name

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal t0
        seconds[step] = time.perf_counter() - t0
        t0 = time.perf_counter()

    float_aug, qdq_aug = work / "float.aug.onnx", work / "qdq.aug.onnx"
    dbg.modify_model_output_intermediate_tensors(float_model, float_aug)
    dbg.modify_model_output_intermediate_tensors(qdq_model, qdq_aug)
    lap("augment")
    float_acts = dbg.collect_activations(str(float_aug), RawReader(input_name, raws, tp))
    lap("collect float")
    qdq_acts = dbg.collect_activations(str(qdq_aug), RawReader(input_name, raws, tp))
    lap("collect qdq")
    matched = dbg.create_activation_matching(qdq_acts, float_acts)
    errors = dbg.compute_activation_error(matched)
    lap("activation errors")
    weights = dbg.compute_weight_error(dbg.create_weight_matching(str(float_model), str(qdq_model)))
    lap("weight errors")
    return PeerResult(
        {t: e["xmodel_err"] for t, e in errors.items() if "xmodel_err" in e},
        {t: e["qdq_err"] for t, e in errors.items()},
        weights,
        seconds,
    )
