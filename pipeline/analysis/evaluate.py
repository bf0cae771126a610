"""Evaluate: float vs quantized outputs of every kept layer, per scene, against each scene's gate.

The steps, each in its own module:

1. :func:`pipeline.analysis.runs.run_variants`: the float model and the quantized variants on
   every image (``full`` from the backend, :mod:`pipeline.backends.base`; attribution and
   layerwise from the simulation), every kept tensor compared in one pass
   (:mod:`pipeline.analysis.metrics`: SQNR, cosine, clip rate, tail), summed per scene;
2. :func:`pipeline.analysis.sensitivity.sweep`: enable-one / disable-one for the worst layers;
3. :func:`pipeline.analysis.summary.summarize`: layer rows and scene metrics
   (:mod:`pipeline.analysis.artifacts`), the layer to blame;
4. :mod:`pipeline.analysis.gates`: each scene against its gate;
5. writing: ``metrics.json`` and ``layers.json`` through the artifacts, the CSVs for
   ``dvc plots`` through :mod:`pipeline.analysis.writers`.

:class:`OneshotScorer` is step 1 and 3 for the whole quantized model only: what comparing
alternative encodings (remedies, stability) needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.analysis import sensitivity
from pipeline.analysis.artifacts import SceneMetrics
from pipeline.analysis.gates import gate_failures as gate_failures  # fieldcal gate (cli)
from pipeline.analysis.runs import EvalImage, EvalOptions, SceneResult, run_variants
from pipeline.analysis.summary import summarize as summarize
from pipeline.backends.base import Backend
from pipeline.graph.view import ModelView
from pipeline.params import EvaluateParams, TensorsParams
from pipeline.quantization.encodings import Encodings


def run_evaluation(
    view: ModelView,
    enc: Encodings,
    images: Sequence[EvalImage],
    tp: TensorsParams,
    opts: EvalOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, SceneResult]:
    """Steps 1 and 2: per-scene sums of every variant, and the sweep when asked for."""
    opts = opts or EvalOptions()
    results = run_variants(view, enc, images, tp, opts, progress)
    if opts.sensitivity_layers:
        sensitivity.sweep(view, enc, images, tp, results, opts)
    return results


@dataclass(frozen=True)
class OneshotScorer:
    """Scores encodings on evaluation images with the whole model quantized (no attribution,
    layerwise or sweep). Holds what travels with every such score: the model view, the tensor
    spec, the evaluate params (gates, headline outputs), the detection decoder, the rounding
    and the backend (None: the embedded simulation)."""

    view: ModelView
    tp: TensorsParams
    ep: EvaluateParams
    decoder: str = "none"
    round_mode: str = "half_away"
    backend: Backend | None = None

    def options(self) -> EvalOptions:
        return EvalOptions(
            attribution=False,
            layerwise=False,
            sensitivity_layers=0,
            decoder=self.decoder,
            detection_threshold=self.ep.detection_threshold,
            round_mode=self.round_mode,
            requant=self.ep.simulation,
            backend=self.backend,
        )

    def scenes(self, enc: Encodings, images: Sequence[EvalImage]) -> dict[str, SceneMetrics]:
        """Per-scene metrics of ``enc`` on ``images``."""
        results = run_variants(self.view, enc, images, self.tp, self.options())
        metrics, _, _ = summarize(self.view, results, self.ep)
        return metrics
