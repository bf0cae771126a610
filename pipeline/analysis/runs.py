"""Model runs of an evaluation: the float reference and each quantized variant on every image,
every kept tensor compared in one pass, accumulated per scene.

Variants: ``full`` (oneshot: everything quantized, errors accumulate; QNN's oneshot-layerwise)
comes from the backend (:mod:`pipeline.backends.base`); ``weights_only`` and
``activations_only`` (attribution) and ``layerwise`` (each layer fed float inputs, its own
error) are the embedded simulation's, which alone can quantize part of a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pipeline.analysis.detect import DECODERS, Agreement
from pipeline.analysis.metrics import (
    Comparison,
    LayerAcc,
    Reference,
    TailSample,
    clip_bounds,
    fake_quant_of,
    tail_ratio,
)
from pipeline.backends.base import Backend, QuantizedModel
from pipeline.backends.embedded import EmbeddedBackend
from pipeline.data.tensors import read_raw
from pipeline.graph.rewrite import with_outputs
from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView
from pipeline.native import kernels
from pipeline.params import TensorsParams
from pipeline.quantization.encoding import RoundMode
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.simulate import Requant, SimOptions, build_layerwise_model

VARIANTS = ("full", "weights_only", "activations_only")
Tensors = dict[str, NDArray[np.float32]]


@dataclass(frozen=True)
class EvalImage:
    raw: Path
    path: str  # the source image, relative to datasets/
    scene: str


@dataclass(frozen=True)
class EvalOptions:
    attribution: bool = True
    layerwise: bool = True
    sensitivity_layers: int = 0
    decoder: str = "none"
    detection_threshold: float = 0.5
    round_mode: str = "half_away"
    requant: Requant = "reference"  # the embedded simulation's (evaluate.simulation)
    sqnr_signal: str = "golden"  # evaluate.sqnr_signal: which layers the sweep picks
    # Runs the ``full`` variant; None: the embedded simulation with ``round_mode``.
    backend: Backend | None = None

    @property
    def mode(self) -> RoundMode:
        return "half_even" if self.round_mode == "half_even" else "half_away"

    def simulation(self) -> EmbeddedBackend:
        """The embedded backend for the simulation-only variants (the backend itself when it is
        the simulation, so they share its quantized weights)."""
        b = self.backend
        return b if isinstance(b, EmbeddedBackend) else EmbeddedBackend(self.mode, self.requant)


@dataclass
class SceneResult:
    images: int = 0
    layers: dict[str, dict[str, LayerAcc]] = field(default_factory=dict)  # variant -> tensor
    detections: Agreement | None = None
    # per kept tensor: share of max |x| needed to cover 99.99 % of |x| (float model), per image
    tail: dict[str, list[float]] = field(default_factory=dict)
    # layer -> {"enabled_only": LayerAcc per output, "disabled": ...}
    sensitivity: dict[str, dict[str, dict[str, LayerAcc]]] = field(default_factory=dict)


@dataclass(frozen=True)
class TensorResult:
    """One kept tensor of one image: its reference, each variant's comparison, its tail."""

    ref: Reference
    variants: dict[str, Comparison]
    tail: float


def compare_image(
    xs: Mapping[str, NDArray[np.float32]],
    ranges: Mapping[str, tuple[float, float]],
    names: Sequence[str],
    variants: Mapping[str, Mapping[str, NDArray[np.float32]]],
    fake_quant: Mapping[str, Mapping[str, kernels.FakeQuant]] | None = None,
) -> list[TensorResult]:
    """Every variant's tensors against the float ones, in one pass per tensor
    (:func:`pipeline.native.kernels.compare`: each float tensor read once, each variant's once),
    tensors in parallel, results in ``names`` order. A variant covers the tensors it has;
    ``fake_quant[variant][tensor]``, where given, is applied to that variant's tensor first."""
    fq = fake_quant or {}

    def one(t: str) -> TensorResult:
        x = np.ascontiguousarray(xs[t], dtype=np.float32).ravel()
        which = [v for v, ys in variants.items() if t in ys]
        ys = [np.ascontiguousarray(variants[v][t], dtype=np.float32).ravel() for v in which]
        sample = TailSample.of(x.size)
        fqs = [fq.get(v, {}).get(t) for v in which]
        c = kernels.compare(x, *ranges[t], ys, fqs, top=sample.top, top_step=sample.stride)
        comparisons = {
            v: Comparison(s.see, s.syy, s.max_abs, x.size)
            for v, s in zip(which, c.sums, strict=True)
        }
        return TensorResult(Reference(x, c.sxx, c.outside), comparisons, tail_ratio(c, x.size))

    return kernels.each(one, names)


class VariantRuns:
    """The models evaluation runs on each image, built and opened once.

    ``full`` from ``opts.backend``; ``weights_only`` and ``activations_only`` with
    ``opts.attribution``, ``layerwise`` with ``opts.layerwise`` (the simulation's). The
    layerwise model carries the whole float graph beside each layer's quantized copy: its float
    tensors are the reference, so no separate float run is needed; the layerwise copies'
    outputs come unquantized, and ``fake_quant`` says how :func:`compare_image` quantizes them.
    """

    def __init__(self, view: ModelView, enc: Encodings, opts: EvalOptions) -> None:
        self.names = view.kept_tensors
        self.mode: RoundMode = opts.mode
        sim = opts.simulation()
        self.quantized: dict[str, QuantizedModel] = {
            "full": (opts.backend or sim).prepare(view, enc, self.names)
        }
        for v in VARIANTS[1:] if opts.attribution else ():
            only = SimOptions(
                quantize_weights=v != "activations_only",
                quantize_activations=v != "weights_only",
                round_mode=self.mode,
                requant=sim.requant,
            )
            self.quantized[v] = sim.build_model(view, enc, self.names, only)
        self.lw_names: dict[str, str] = {}
        if opts.layerwise:
            lw_model, self.lw_names = build_layerwise_model(
                view, enc, self.mode, quantize_outputs=False, params_cache=sim.params_cache(enc)
            )
            self.ref_runner = Runner(with_outputs(lw_model, self.names))
        else:
            self.ref_runner = Runner(with_outputs(view.model, self.names))
        self.fake_quant = {
            "layerwise": {t: fake_quant_of(enc.activations[t], self.mode) for t in self.lw_names}
        }

    def run(self, x: NDArray[np.float32]) -> tuple[Tensors, dict[str, Tensors]]:
        """(float tensors by kept name, {variant: its tensors by kept name}) for one input."""
        ref_out = self.ref_runner.run(x, self.names + list(self.lw_names.values()))
        ref = {t: ref_out[t] for t in self.names}
        outs = {v: dict(model.run(x)) for v, model in self.quantized.items()}
        if self.lw_names:
            outs["layerwise"] = {t: ref_out[lw] for t, lw in self.lw_names.items()}
        return ref, outs


def _add_image(
    res: SceneResult,
    img: EvalImage,
    tensors: Sequence[TensorResult],
    names: Sequence[str],
    inner: set[str],
) -> None:
    """Fold one image's comparisons into its scene's sums."""
    res.images += 1
    for t, tr in zip(names, tensors, strict=True):
        for v, c in tr.variants.items():
            res.layers[v][t].add(tr.ref, c, img.path)
        if t in inner:
            res.tail.setdefault(t, []).append(tr.tail)


def _add_detections(
    res: SceneResult, ref: Tensors, quantized: Tensors, img: EvalImage, opts: EvalOptions
) -> None:
    """Decode float and quantized detections of one image and count their agreement."""
    decoder = DECODERS.get(opts.decoder)
    if decoder is None:
        return
    fn, needed = decoder
    if all(k in ref for k in needed):
        res.detections = res.detections or Agreement()
        res.detections.add(
            fn({k: ref[k][0] for k in needed}, opts.detection_threshold),
            fn({k: quantized[k][0] for k in needed}, opts.detection_threshold),
            img.path,
        )


def run_variants(
    view: ModelView,
    enc: Encodings,
    images: Sequence[EvalImage],
    tp: TensorsParams,
    opts: EvalOptions = EvalOptions(),
    progress: Callable[[int], None] | None = None,
) -> dict[str, SceneResult]:
    """Run the float model and each quantized variant (:class:`VariantRuns`) on every image;
    compare every kept tensor and accumulate per scene."""
    runs = VariantRuns(view, enc, opts)
    names = runs.names
    ranges = {t: clip_bounds(enc.activations[t]) for t in names}
    results: dict[str, SceneResult] = {}
    inner = set(names) - {view.input_name}
    for img in images:
        ref, outs = runs.run(read_raw(img.raw, tp, view.input_layout))
        res = results.setdefault(img.scene, SceneResult())
        for v in outs:
            res.layers.setdefault(v, {t: LayerAcc() for t in outs[v]})
        tensors = compare_image(ref, ranges, names, outs, runs.fake_quant)
        _add_image(res, img, tensors, names, inner)
        del tensors
        _add_detections(res, ref, outs["full"], img, opts)
        del outs, ref
        if progress:
            progress(1)
    return results
