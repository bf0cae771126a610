"""Where 8- and 16-bit activations meet: which ops run at 16 bits and which tensors they convert.

Convention: ``real = scale * (q + offset)``, ``q in [0, 2^bw - 1]``, QNN's sign (offset <= 0).

A remedy raises a few kept tensors to 16 bits (:func:`pipeline.analysis.precision.raise16`) and
the simulation reads each tensor at its own encoding, so an op reading a 16-bit tensor computes
from its 16-bit values. onnxruntime-qnn 2.7.0 (QAIRT 2.51) leaves a Conv/ConvTranspose between
8- and 16-bit tensors to the CPU; it takes an Add or a Sigmoid between them, but the emulator then
lands 1-3 dB further from float than onnxruntime's CPU on the same QDQ model, against 0.1-0.3 dB
with one bitwidth per op (measured on ``tests/qnn_models.tiny_model``). So every op that touches
both 8- and 16-bit kept tensors runs at 16 bits:

* an 8-bit tensor it reads is *widened*: its 8-bit integers converted to the 16-bit grid of the
  same range (:func:`widened`: scale / 257, offset x 257). Every 8-bit value lies on that grid
  (``(2^16 - 1) = 257 (2^8 - 1)``), so the conversion is exact and the op receives the very values
  the simulation gives it;
* an 8-bit tensor it writes is written on the widened grid and then converted to its own 8-bit
  encoding. That rounds twice (``round(round(257 x / s) / 257)``), which differs from one
  rounding by one 8-bit step for values within ``s / 514`` of a half step; the simulation rounds
  the same way (:func:`pipeline.quantization.simulate.build_quantized_model`).

In the QDQ model a conversion is a DequantizeLinear -> QuantizeLinear pair that onnxruntime's QNN
EP fuses into one QNN ``Convert`` (``qnn_node_group/dq_q_fusion``: the DQ's only consumer is the
Q, and the DQ is no graph output).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.graph.view import ModelView
from pipeline.quantization.encoding import Encoding
from pipeline.quantization.encodings import Encodings

WIDE_BITS = 16
NARROW_BITS = 8
WIDEN = ((1 << WIDE_BITS) - 1) // ((1 << NARROW_BITS) - 1)  # 257


def widened(e: Encoding) -> Encoding:
    """The 16-bit grid over ``e``'s 8-bit range that contains every point of ``e``'s grid: the
    tf encoding of ``[e.min, e.max]`` at 16 bits when that range is already nudged.

    >>> w = widened(Encoding(8, 0.5, -10, -5.0, 122.5, False))
    >>> (w.bitwidth, w.scale * 257, w.offset)
    (16, 0.5, -2570)
    """
    if e.bitwidth != NARROW_BITS:
        raise ValueError(f"only 8-bit encodings are widened; got {e.bitwidth}-bit")
    return Encoding(WIDE_BITS, e.scale / WIDEN, e.offset * WIDEN, e.min, e.max, e.symmetric)


@dataclass(frozen=True)
class Plan:
    """The conversions a model with mixed 8/16-bit activations needs (module docstring).

    ``wide_ops``: node ids (name, or first output when unnamed) of the ops run at 16 bits
    although some of their tensors are 8-bit. ``reads``: 8-bit kept tensor -> the wide ops that
    read it widened. ``writes``: 8-bit kept tensors a wide op writes (widened, then narrowed to
    their own encoding).
    """

    wide_ops: tuple[str, ...] = ()
    reads: dict[str, frozenset[str]] = field(default_factory=dict)
    writes: frozenset[str] = frozenset()

    def widens(self, tensor: str, op: str) -> bool:
        """Whether op ``op`` reads ``tensor`` widened."""
        return op in self.reads.get(tensor, frozenset())

    def received(self, tensor: str, op: str, enc: Encodings) -> Encoding:
        """The encoding op ``op`` reads ``tensor`` with: widened when the plan widens it."""
        own = enc.activations[tensor]
        return widened(own) if self.widens(tensor, op) else own


def plan(view: ModelView, enc: Encodings) -> Plan:
    """Which ops of ``view`` run at 16 bits under ``enc``, and the tensors they convert."""
    wide: list[str] = []
    reads: dict[str, set[str]] = {}
    writes: set[str] = set()
    folded = {op.folded_bn for op in view.weighted if op.folded_bn}
    for node in view.model.graph.node:
        node_id = node.name or node.output[0]
        if node_id in folded:
            continue
        outs = _carriers(view, enc, node.output)
        ins = _carriers(view, enc, node.input) - outs  # a fused group's own tensor is no input
        bits = {enc.activations[t].bitwidth for t in ins | outs}
        if bits != {NARROW_BITS, WIDE_BITS}:
            continue
        wide.append(node_id)
        for t in sorted(ins):
            if enc.activations[t].bitwidth == NARROW_BITS:
                reads.setdefault(t, set()).add(node_id)
        writes.update(t for t in outs if enc.activations[t].bitwidth == NARROW_BITS)
    return Plan(tuple(wide), {t: frozenset(s) for t, s in reads.items()}, frozenset(writes))


def _carriers(view: ModelView, enc: Encodings, names: Iterable[str]) -> set[str]:
    """The kept tensors (with an activation encoding) that carry ``names``' values."""
    carried = (view.fused_into.get(x) for x in names)
    return {t for t in carried if t is not None and t in enc.activations}
