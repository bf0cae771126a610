"""The backend seam: run this quantized model on these images.

A :class:`Backend` turns a model view and its encodings into a :class:`QuantizedModel`, which
runs one input at a time and returns tensors by the float model's names. Evaluation
(:mod:`pipeline.analysis.runs`), remedies and stability score encodings through this seam only;
what they compare against is the float model on the CPU (:class:`pipeline.graph.runtime.Runner`),
whichever backend produced the quantized side.

Backends:

* ``embedded`` (:mod:`pipeline.backends.embedded`): fieldcal's simulation, a fake-quantized
  ONNX graph on onnxruntime's CPU provider. It returns every tensor asked for.
* ``qnn-htp`` (:mod:`pipeline.backends.htp_runner`): ``prepare`` exports the QDQ ONNX model of
  ``(view, enc)``, exposing the tensors asked for as graph outputs, for a session on Qualcomm's
  HTP (onnxruntime-qnn); ``run`` feeds static-shape inputs, ``run_many`` (:class:`BatchedModel`)
  caches per image and runs in parallel processes. It may return only a subset of
  the tensors asked for (the model outputs at least): comparisons cover the tensors a backend
  returns, so a layer the HTP does not expose simply has no row for that backend.

What stays embedded-specific, outside the seam: the attribution variants (weights only,
activations only), the layerwise model (each layer fed float inputs) and the per-layer sweep
(:mod:`pipeline.analysis.sensitivity`). They need the simulation's control over which layers
are quantized, which a device does not offer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from pipeline.graph.view import ModelView
    from pipeline.quantization.encodings import Encodings

Tensors = Mapping[str, NDArray[np.float32]]


@dataclass(frozen=True)
class Provenance:
    """Which backend produced a set of numbers, for reports: its name and tool versions."""

    backend: str
    versions: tuple[tuple[str, str], ...]


class QuantizedModel(Protocol):
    """One quantized model, ready to run."""

    def run(self, x: NDArray[np.float32]) -> Tensors:
        """Tensors by the float model's names for one input ``x`` in the model's input layout
        (``(1, C, H, W)`` or ``(1, H, W, C)`` float32, static shape). The arrays may be views of
        the backend's buffers, valid until the next call."""
        ...


@runtime_checkable
class BatchedModel(Protocol):
    """A quantized model that runs many inputs itself (cached, in parallel: the HTP's)."""

    def run_many(
        self, xs: Sequence[NDArray[np.float32]], progress: Callable[[int], None]
    ) -> list[Tensors]: ...


def run_many(
    model: QuantizedModel, xs: Sequence[NDArray[np.float32]], progress: Callable[[int], None]
) -> list[Tensors]:
    """Every input through ``model``, in order: its own ``run_many`` where it has one, else one
    ``run`` at a time (each result copied: ``run`` may return views of its buffers).
    ``progress(n)`` is told as inputs finish."""
    if isinstance(model, BatchedModel):
        return model.run_many(xs, progress)
    out: list[Tensors] = []
    for x in xs:
        out.append({k: v.copy() for k, v in model.run(x).items()})
        progress(1)
    return out


class Backend(Protocol):
    """Builds quantized models from a model view and its encodings."""

    @property
    def name(self) -> str: ...

    def provenance(self) -> Provenance: ...

    def prepare(self, view: ModelView, enc: Encodings, tensors: Sequence[str]) -> QuantizedModel:
        """The quantized model of ``view`` under ``enc``, returning ``tensors`` (kept tensor
        names of the float model; a backend may return fewer, never the float ones)."""
        ...
