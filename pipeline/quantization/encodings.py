"""The encodings of a whole model: what calibration computes, the encodings file holds, and
simulation, evaluation and coverage apply. Each :class:`~pipeline.quantization.encoding.Encoding`
follows QNN's convention, ``real = scale * (q + offset)``."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.quantization.encoding import Encoding


@dataclass(frozen=True)
class Encodings:
    """All encodings of a model: activations by tensor name, params by initializer name."""

    activations: dict[str, Encoding]
    weights: dict[str, list[Encoding]]  # one entry per-tensor, or one per output channel
    biases: dict[str, list[Encoding]]
    weight_axis: dict[str, int] = field(default_factory=dict)
