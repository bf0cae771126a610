"""Precision remedies on existing encodings: activations raised to 16 bits (and the bias grids
that follow them).

QNN takes a bit-width per tensor in the quantization overrides file, so a remedy can raise a
few activations without touching the rest. Convention (spec §2.4): ``real = scale * (q +
offset)``, ``q in [0, 2^bw - 1]``, offset <= 0 (QNN's sign).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from pipeline.calibration.encodings import bias_encodings
from pipeline.graph.view import ModelView
from pipeline.params import QuantizeParams
from pipeline.quantization.encoding import tf_encoding
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.observers import MinMax


def raise16(
    view: ModelView, qp: QuantizeParams, enc: Encodings, ranges: MinMax, tensors: Collection[str]
) -> Encodings:
    """``enc`` with ``tensors`` at 16 bits (tf over ``ranges``), and the bias grids of the
    layers they feed derived again from the 16-bit input scale, as QNN's converter derives them
    (bias scale = input scale x weight scale): keeping the 8-bit input's grid would add bias
    errors of up to tens of 16-bit steps."""
    acts = dict(enc.activations)
    for t in tensors:
        lo, hi = ranges.range_of(t)
        acts[t] = tf_encoding(lo, hi, 16, qp.min_range_value)
    raised = replace(enc, activations=acts)
    biases = dict(enc.biases)
    for op in view.weighted:
        if op.bias_name and op.input in tensors:
            biases[op.bias_name] = bias_encodings(op, raised, qp.bias_bitwidth, qp.min_range_value)
    return replace(raised, biases=biases)
