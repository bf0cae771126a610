"""The per-layer sweep (AIMET QuantAnalyzer's enable-one / disable-one, docs §10.10).

For the N layers that lose most (:func:`pipeline.analysis.artifacts.worst_first` on the SQNR
pooled over scenes), quantize only that layer (``enabled_only``) or everything but it
(``disabled``), and record the output SQNR of each. Embedded-specific: it needs the simulation's
control over which layers are quantized (see :mod:`pipeline.backends.base`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import reduce

from pipeline.analysis.artifacts import worst_first
from pipeline.analysis.metrics import Comparison, LayerAcc, Reference, clip_bounds
from pipeline.analysis.runs import EvalImage, EvalOptions, SceneResult
from pipeline.data.tensors import read_raw
from pipeline.graph.rewrite import with_outputs
from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView
from pipeline.params import TensorsParams
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.simulate import SimOptions


def _pooled(results: Mapping[str, SceneResult], variant: str, t: str) -> LayerAcc:
    return reduce(LayerAcc.pooled, (r.layers[variant][t] for r in results.values()), LayerAcc())


def ranked_layers(
    view: ModelView, results: Mapping[str, SceneResult], signal: str = "golden"
) -> list[str]:
    """Inner kept tensors worst first, on signal and noise pooled over every scene: own
    (layerwise) error where every scene measured it, else accumulated; SQNR with ``signal``
    (``evaluate.sqnr_signal``), as the report's worst layers."""
    inner = [t for t in view.kept_tensors if t != view.input_name]
    own = all("layerwise" in r.layers for r in results.values())
    return worst_first(
        (
            t,
            _pooled(results, "layerwise", t).sqnr(signal) if own else None,
            _pooled(results, "full", t).sqnr(signal),
        )
        for t in inner
    )


def float_output_references(
    view: ModelView, enc: Encodings, images: Sequence[EvalImage], tp: TensorsParams
) -> dict[str, dict[str, Reference]]:
    """Per image (by raw path) the float model's outputs, each with its own sums."""
    runner = Runner(with_outputs(view.model, view.outputs))
    return {
        str(img.raw): {
            o: Reference.of(y, *clip_bounds(enc.activations[o]))
            for o, y in runner.run(read_raw(img.raw, tp, view.input_layout)).items()
        }
        for img in images
    }


def sweep(
    view: ModelView,
    enc: Encodings,
    images: Sequence[EvalImage],
    tp: TensorsParams,
    results: dict[str, SceneResult],
    opts: EvalOptions,
) -> None:
    """Record in ``results[scene].sensitivity`` the sweep of the ``opts.sensitivity_layers``
    worst layers, on the embedded simulation."""
    layers, sim = opts.sensitivity_layers, opts.simulation()
    refs = float_output_references(view, enc, images, tp)
    for layer in ranked_layers(view, results, opts.sqnr_signal)[:layers]:
        others = frozenset(t for t in view.kept_tensors if t != layer)
        for kind, float_layers in (("enabled_only", others), ("disabled", frozenset([layer]))):
            options = SimOptions(
                round_mode=sim.round_mode, float_layers=float_layers, requant=sim.requant
            )
            model = sim.build_model(view, enc, view.outputs, options)
            for img in images:
                out = model.run(read_raw(img.raw, tp, view.input_layout))
                accs = (
                    results[img.scene]
                    .sensitivity.setdefault(layer, {})
                    .setdefault(kind, {o: LayerAcc() for o in view.outputs})
                )
                ref = refs[str(img.raw)]
                for o in view.outputs:
                    accs[o].add(ref[o], Comparison.of(ref[o], out[o]), img.path)
