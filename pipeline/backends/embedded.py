"""The embedded backend: fieldcal's simulation (a fake-quantized ONNX graph) on onnxruntime's CPU.

Implements :class:`pipeline.backends.base.Backend`. Not bit-exact with a device: rounding and
requantization follow QNN's documented convention (pipeline/quantization/simulate.py), the
arithmetic between them is float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version

import numpy as np
from numpy.typing import NDArray

from pipeline.backends.base import Provenance, Tensors
from pipeline.graph.rewrite import with_outputs
from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView
from pipeline.quantization.encoding import RoundMode
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.simulate import (
    ParamsCache,
    Requant,
    SimOptions,
    build_quantized_model,
)


class SimulatedModel:
    """A simulated quantized model and its session (a ``QuantizedModel``)."""

    def __init__(self, runner: Runner, tensors: Sequence[str]) -> None:
        self.runner = runner
        self.tensors = list(tensors)

    def run(self, x: NDArray[np.float32]) -> Tensors:
        return self.runner.run(x, self.tensors)


class EmbeddedBackend:
    """The simulation as a backend. ``round_mode`` is the activations' and weights' rounding,
    ``requant`` the Conv groups' requantization (:class:`SimOptions`).

    Fake-quantized weights and biases are kept per encodings object for the models built from
    it (:data:`pipeline.quantization.simulate.ParamsCache`), so the attribution variants and
    the sweep, which build several models from one set of encodings, quantize them once."""

    name = "embedded"

    def __init__(self, round_mode: RoundMode = "half_away", requant: Requant = "reference") -> None:
        self.round_mode: RoundMode = round_mode
        self.requant: Requant = requant
        self._caches: list[tuple[Encodings, ParamsCache]] = []

    def provenance(self) -> Provenance:
        return Provenance(self.name, (("onnxruntime", version("onnxruntime")),))

    def params_cache(self, enc: Encodings) -> ParamsCache:
        """The fake-quantized weights and biases of models built from ``enc`` (this object)."""
        for e, cache in self._caches:
            if e is enc:
                return cache
        self._caches = [*self._caches[-7:], (enc, {})]
        return self._caches[-1][1]

    def build_model(
        self,
        view: ModelView,
        enc: Encodings,
        tensors: Sequence[str],
        options: SimOptions | None = None,
    ) -> SimulatedModel:
        sim = options or SimOptions(round_mode=self.round_mode, requant=self.requant)
        model = build_quantized_model(view, enc, sim, params_cache=self.params_cache(enc))
        return SimulatedModel(Runner(with_outputs(model, list(tensors))), tensors)

    def prepare(self, view: ModelView, enc: Encodings, tensors: Sequence[str]) -> SimulatedModel:
        return self.build_model(view, enc, tensors)
