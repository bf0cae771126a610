"""QNN-readiness advice from the model and the measured statistics, each item with its figure.

Rules (thresholds are module constants, documented here):

* ``standalone_batchnorm``: a BatchNormalization that does not fold into a preceding
  Conv/ConvTranspose (its input has other consumers or comes from another op). QNN then runs it
  as its own op on the DSP/HTP: slower, and one more quantized tensor.
* ``channels_not_multiple_of_32``: Conv/ConvTranspose input or output channel counts that are
  not multiples of 32; HTP vector units work on 32-channel blocks, the remainder is padding.
* ``per_channel_spread``: weights whose median channel uses under 10 % of the range a
  per-tensor encoding must cover (median channel |w|max / tensor |w|max < 0.10): per-tensor
  quantization wastes most of the grid on most channels; per-channel fixes it.
* ``long_tail``: activations whose 99.99th percentile of |x| is under 25 % of max |x| (mean
  over evaluation images): min-max (``tf``) spends most of the grid on rare values; ``enhanced``
  or ``percentile`` usually give a better SQNR there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from pipeline.analysis.artifacts import LayerRow, read_as
from pipeline.graph.view import ModelView, WeightedOp

SPREAD_THRESHOLD = 0.10
TAIL_THRESHOLD = 0.25
CHANNEL_BLOCK = 32


@dataclass(frozen=True)
class Advice:
    kind: str
    layer: str
    figure: float
    message: str


def advise(
    view: ModelView,
    per_channel: bool,
    act_mode: str,
    layer_rows: Mapping[str, Sequence[LayerRow]],
) -> list[Advice]:
    """Every rule of the module docstring, in that order (model first, then measurements)."""
    out = standalone_batchnorms(view)
    for op in view.weighted:
        if op.op_type in ("Conv", "ConvTranspose"):
            out += conv_items(view, op, per_channel)
    return out + long_tails(layer_rows, act_mode)


def standalone_batchnorms(view: ModelView) -> list[Advice]:
    """``standalone_batchnorm`` items."""
    out: list[Advice] = []
    folded = {op.folded_bn for op in view.weighted if op.folded_bn}
    for node in view.model.graph.node:
        node_id = node.name or node.output[0]
        if node.op_type == "BatchNormalization" and node_id not in folded:
            out.append(
                Advice(
                    "standalone_batchnorm",
                    node.output[0],
                    1.0,
                    f"BatchNormalization producing {node.output[0]!r} does not fold into a "
                    "preceding convolution; QNN runs it as a standalone op (slower on DSP/HTP, one "
                    "more quantized tensor). Fold it into the convolution before export.",
                )
            )
    return out


def conv_items(view: ModelView, op: WeightedOp, per_channel: bool) -> list[Advice]:
    """``channels_not_multiple_of_32`` and ``per_channel_spread`` for one Conv/ConvTranspose."""
    out: list[Advice] = []
    w = op.weight
    if op.op_type == "Conv":  # OIHW, I per group
        c_out, c_in = w.shape[0], w.shape[1] * op.group
    else:  # ConvTranspose: IOHW, O per group
        c_out, c_in = w.shape[1] * op.group, w.shape[0]
    counts = [("out", c_out)] + ([] if op.input == view.input_name else [("in", c_in)])
    odd = [f"{name} {c}" for name, c in counts if c % CHANNEL_BLOCK]
    if odd:
        out.append(
            Advice(
                "channels_not_multiple_of_32",
                op.output,
                float(c_out),
                f"{op.op_type} producing {op.conv_output!r} has channels {', '.join(odd)}: "
                "not multiples of "
                f"{CHANNEL_BLOCK}, so the HTP pads each to the next block of {CHANNEL_BLOCK}.",
            )
        )
    # (C_out, rest): each output channel's weights on one row
    absmax = np.abs(np.moveaxis(w, op.axis, 0).reshape(c_out, -1)).max(axis=1)
    top = float(absmax.max())
    if top > 0:
        share = float(np.median(absmax)) / top
        if share < SPREAD_THRESHOLD:
            now = "per-channel is on: keep it" if per_channel else "switch to per-channel"
            out.append(
                Advice(
                    "per_channel_spread",
                    op.weight_name,
                    share,
                    f"weight {op.weight_name!r}: the median output channel spans {share:.1%} "
                    f"of the tensor's range, so a per-tensor encoding leaves it about "
                    f"{max(1, int(share * 255))} of 255 steps ({now}).",
                )
            )
    return out


def long_tails(layer_rows: Mapping[str, Sequence[LayerRow]], act_mode: str) -> list[Advice]:
    """``long_tail`` items (mean tail ratio over scenes)."""
    out: list[Advice] = []
    tails: dict[str, list[float]] = {}
    for rows in layer_rows.values():
        for r in rows:
            if r.tail_ratio is not None:
                tails.setdefault(r.layer, []).append(r.tail_ratio)
    for layer, ratios in tails.items():
        ratio = float(np.mean(ratios))
        if ratio < TAIL_THRESHOLD:
            hint = (
                "enhanced or percentile would likely beat it"
                if act_mode == "tf"
                else f"the current mode is {act_mode}"
            )
            out.append(
                Advice(
                    "long_tail",
                    layer,
                    ratio,
                    f"activation {layer!r}: 99.99 % of values lie within {ratio:.1%} of the max; "
                    f"min-max spends most of its grid on rare values ({hint}).",
                )
            )
    return out


def to_json(items: Sequence[Advice]) -> list[dict[str, Any]]:
    return [asdict(a) for a in items]


_ADVICE = TypeAdapter(list[Advice])


def read_advice(path: Path) -> list[Advice]:
    """``out/evaluate/advice.json`` as written from :func:`to_json`."""
    return read_as(path, _ADVICE)
