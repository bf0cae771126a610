"""Evaluate: float vs simulated-quantized outputs of every kept layer, per scene, with gates.

Metrics (spec §8), accumulated in float64 over every element of every evaluation image:

* SQNR, reference-based (ONNX Runtime ``qdq_loss_debug``, the default):
  ``20 log10(max(||x||, eps) / max(||x - y||, eps))`` with ``x`` the float tensor, ``y`` the
  quantized one and ``eps`` = float64 machine epsilon; pooled over a scene's images it is
  ``10 log10(sum x^2 / sum (x - y)^2)``, i.e. the tensors concatenated.
* SQNR, inference-based (QNN accuracy debugger ``SQNRVerifier``): signal power from ``y``.
* cosine similarity ``sum(x y) / sqrt(sum x^2 sum y^2)`` (1.0 when both are all zero);
* MSE, max absolute error, and the clip rate: the fraction of float activations more than half
  a step outside the tensor's encoding range (nearer ones only round to the range's end).

Modes: ``oneshot`` runs the whole quantized model so errors accumulate (QNN's
oneshot-layerwise); attribution re-runs with weights only and activations only quantized.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.analysis.detect import DECODERS, Agreement
from pipeline.data.tensors import read_raw
from pipeline.errors import ParamsError
from pipeline.graph.rewrite import with_outputs
from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView
from pipeline.native import kernels
from pipeline.params import EvaluateParams, Gate, QuantizeParams, TensorsParams
from pipeline.quantization.encoding import Encoding, RoundMode
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.simulate import (
    ParamsCache,
    SimOptions,
    build_layerwise_model,
    build_quantized_model,
)

EPS = float(np.finfo(np.float64).eps)
VARIANTS = ("full", "weights_only", "activations_only")


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """``10 log10(signal / noise)`` on sums of squares, each floored at eps^2 (ORT's guard)."""
    return 10.0 * math.log10(max(signal_power, EPS * EPS) / max(noise_power, EPS * EPS))


def cosine(sxy: float, sxx: float, syy: float) -> float:
    if sxx == 0.0 and syy == 0.0:
        return 1.0
    if sxx == 0.0 or syy == 0.0:
        return 0.0
    return sxy / math.sqrt(sxx * syy)


@dataclass(frozen=True)
class Reference:
    """One image's float tensor and its own sums, shared by every variant compared with it."""

    x: NDArray[np.float32]  # flattened, contiguous
    sxx: float
    clipped: int  # elements more than half a step outside the encoding range

    @classmethod
    def of(cls, x: NDArray[np.float32], lo: float, hi: float) -> Reference:
        flat = np.ascontiguousarray(x, dtype=np.float32).ravel()
        c = kernels.compare(flat, lo, hi)
        return cls(flat, c.sxx, c.outside)


@dataclass(frozen=True)
class Comparison:
    """One quantized tensor against its reference: the sums one pass over both gives.

    Differences in float32 (exact for nearby values, else within 2^-24 relative), every sum
    accumulated in float64 in a fixed order (:mod:`pipeline.native.kernels`): the same on every
    machine, thread count and engine."""

    see: float  # sum (x - y)^2
    syy: float  # sum y^2
    max_abs: float
    n: int

    @classmethod
    def of(
        cls, ref: Reference, y: NDArray[np.float32], fake_quant: kernels.FakeQuant | None = None
    ) -> Comparison:
        """Against ``y``; with ``fake_quant``, against ``y`` fake-quantized as the simulation
        graph would (same float32 operations), applied inside the comparison pass."""
        flat = np.ascontiguousarray(y, dtype=np.float32).ravel()
        s = kernels.compare(ref.x, 0.0, 0.0, [flat], [fake_quant]).sums[0]
        return cls(s.see, s.syy, s.max_abs, flat.size)


def fake_quant_of(e: Encoding, mode: RoundMode) -> kernels.FakeQuant:
    return kernels.FakeQuant(e.min, e.max, e.scale, float(e.offset), mode == "half_even")


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
        step, _, top = _tail_sample(x.size)
        fqs = [fq.get(v, {}).get(t) for v in which]
        c = kernels.compare(x, *ranges[t], ys, fqs, top=top, top_step=step)
        comparisons = {
            v: Comparison(s.see, s.syy, s.max_abs, x.size)
            for v, s in zip(which, c.sums, strict=True)
        }
        return TensorResult(Reference(x, c.sxx, c.outside), comparisons, _tail_ratio(c, x.size))

    return kernels.each(one, names)


@dataclass
class LayerAcc:
    """Running float64 sums for one tensor over a scene's images."""

    n: int = 0
    sxx: float = 0.0
    syy: float = 0.0
    sxy: float = 0.0
    see: float = 0.0
    max_abs: float = 0.0
    clipped: int = 0
    images: int = 0
    sum_image_sqnr: float = 0.0
    worst_sqnr: float = math.inf
    worst_image: str = ""

    def add(self, ref: Reference, c: Comparison, image: str) -> None:
        self.n += c.n
        self.sxx += ref.sxx
        self.syy += c.syy
        self.sxy += (ref.sxx + c.syy - c.see) / 2  # = sum(x y), without a third sum
        self.see += c.see
        self.max_abs = max(self.max_abs, c.max_abs)
        self.clipped += ref.clipped
        s = sqnr_db(ref.sxx, c.see)
        self.images += 1
        self.sum_image_sqnr += s
        if s < self.worst_sqnr:
            self.worst_sqnr, self.worst_image = s, image

    def sqnr(self, signal: str = "golden") -> float:
        return sqnr_db(self.sxx if signal == "golden" else self.syy, self.see)

    def summary(self, signal: str) -> dict[str, Any]:
        return {
            "sqnr_db": self.sqnr(signal),
            "sqnr_golden_db": self.sqnr("golden"),
            "sqnr_inference_db": self.sqnr("inference"),
            "mean_image_sqnr_db": self.sum_image_sqnr / self.images if self.images else None,
            "cosine": cosine(self.sxy, self.sxx, self.syy),
            "mse": self.see / max(self.n, 1),
            "max_abs_error": self.max_abs,
            "clip_rate": self.clipped / max(self.n, 1),
            "worst_image": self.worst_image,
            "worst_image_sqnr_db": self.worst_sqnr if self.n else None,
        }


@dataclass(frozen=True)
class EvalImage:
    raw: Path
    path: str  # the source image, relative to datasets/
    scene: str


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
class EvalOptions:
    attribution: bool = True
    layerwise: bool = True
    sensitivity_layers: int = 0
    decoder: str = "none"
    detection_threshold: float = 0.5
    round_mode: str = "half_away"


def clip_bounds(e: Encoding) -> tuple[float, float]:
    """Values beyond these are clipped: more than half a step outside [min, max] (nearer ones
    only round to the range's end, an ordinary rounding error)."""
    return e.min - e.scale / 2, e.max + e.scale / 2


TAIL_QUANTILE = 0.9999
TAIL_SAMPLES = 65_536


def upper_quantile_from_top(top: NDArray[np.float32], n: int, q: float) -> float:
    """The ``q`` quantile of ``n`` values by linear interpolation between order statistics
    (numpy's default method), in float64, from ``top``: the values' largest, largest first,
    at least :func:`top_needed` of them."""
    h = (n - 1) * q
    k = int(h)
    a = float(top[n - 1 - k])
    b = float(top[n - 2 - k]) if k + 1 < n else a
    return a + (b - a) * (h - k)


def top_needed(n: int, q: float) -> int:
    """How many of ``n`` values' largest :func:`upper_quantile_from_top` reads."""
    return n - int((n - 1) * q)


def _tail_sample(size: int) -> tuple[int, int, int]:
    """(stride, samples, top values needed) of the tail-ratio sample of a tensor of ``size``
    values: every ``stride``-th value, 64k to 128k of them (all of a smaller tensor)."""
    step = max(1, size // TAIL_SAMPLES)
    samples = -(-size // step)
    return step, samples, top_needed(samples, TAIL_QUANTILE)


def _tail_ratio(c: kernels.Compared, size: int) -> float:
    """quantile(|x|, 0.9999) / max|x| over the strided sample :func:`_tail_sample` (an
    estimate for the advice on long tails, not a metric), from the top values the comparison
    pass kept."""
    if c.peak == 0.0:  # also an empty tensor
        return 1.0
    _, samples, _ = _tail_sample(size)
    return upper_quantile_from_top(c.top, samples, TAIL_QUANTILE) / c.peak


class VariantRuns:
    """The models evaluation runs on each image, built and opened once.

    ``full`` (oneshot: everything quantized, errors accumulate), ``weights_only`` and
    ``activations_only`` (attribution, with ``opts.attribution``), ``layerwise`` (each layer fed
    float inputs, with ``opts.layerwise``). The layerwise model carries the whole float graph
    beside each layer's quantized copy: its float tensors are the reference, so no separate
    float run is needed; the layerwise copies' outputs come unquantized, and ``fake_quant``
    says how :func:`compare_image` quantizes them.
    """

    def __init__(self, view: ModelView, enc: Encodings, opts: EvalOptions) -> None:
        self.names = view.kept_tensors
        self.mode: RoundMode = "half_even" if opts.round_mode == "half_even" else "half_away"
        self.runners: dict[str, Runner] = {}
        params_cache: ParamsCache = {}  # weights fake-quantized once for every variant
        for v in VARIANTS if opts.attribution else VARIANTS[:1]:
            sim = SimOptions(
                quantize_weights=v != "activations_only",
                quantize_activations=v != "weights_only",
                round_mode=self.mode,
            )
            model = build_quantized_model(view, enc, sim, params_cache=params_cache)
            self.runners[v] = Runner(with_outputs(model, self.names))
        self.lw_names: dict[str, str] = {}
        if opts.layerwise:
            lw_model, self.lw_names = build_layerwise_model(
                view, enc, self.mode, quantize_outputs=False, params_cache=params_cache
            )
            self.ref_runner = Runner(with_outputs(lw_model, self.names))
        else:
            self.ref_runner = Runner(with_outputs(view.model, self.names))
        self.fake_quant = {
            "layerwise": {t: fake_quant_of(enc.activations[t], self.mode) for t in self.lw_names}
        }

    def run(
        self, x: NDArray[np.float32]
    ) -> tuple[dict[str, NDArray[np.float32]], dict[str, dict[str, NDArray[np.float32]]]]:
        """(float tensors by kept name, {variant: its tensors by kept name}) for one input."""
        ref_out = self.ref_runner.run(x, self.names + list(self.lw_names.values()))
        ref = {t: ref_out[t] for t in self.names}
        outs = {v: runner.run(x, self.names) for v, runner in self.runners.items()}
        if self.lw_names:
            outs["layerwise"] = {t: ref_out[lw] for t, lw in self.lw_names.items()}
        return ref, outs


def run_evaluation(
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
    decoder = DECODERS.get(opts.decoder)
    ranges = {t: clip_bounds(enc.activations[t]) for t in names}
    results: dict[str, SceneResult] = {}
    inner = set(names) - {view.input_name}
    for img in images:
        ref, outs = runs.run(read_raw(img.raw, tp, view.input_layout))
        res = results.setdefault(img.scene, SceneResult())
        res.images += 1
        for v in outs:
            res.layers.setdefault(v, {t: LayerAcc() for t in outs[v]})
        tensors = compare_image(ref, ranges, names, outs, runs.fake_quant)
        for t, tr in zip(names, tensors, strict=True):
            for v, c in tr.variants.items():
                res.layers[v][t].add(tr.ref, c, img.path)
            if t in inner:
                res.tail.setdefault(t, []).append(tr.tail)
        del tensors
        if decoder is not None:
            fn, needed = decoder
            if all(k in ref for k in needed):
                res.detections = res.detections or Agreement()
                res.detections.add(
                    fn({k: ref[k][0] for k in needed}, opts.detection_threshold),
                    fn({k: outs["full"][k][0] for k in needed}, opts.detection_threshold),
                    img.path,
                )
        del outs, ref
        if progress:
            progress(1)
    if opts.sensitivity_layers:
        _sensitivity(view, enc, images, tp, results, opts, runs.mode)
    return results


def _sensitivity(
    view: ModelView,
    enc: Encodings,
    images: Sequence[EvalImage],
    tp: TensorsParams,
    results: dict[str, SceneResult],
    opts: EvalOptions,
    mode: RoundMode,
) -> None:
    """AIMET-style per-layer sweep (spec §8.4) for the N layers with the lowest pooled SQNR
    (own error when layerwise ran): quantize only that layer (enabled_only), or everything but
    it (disabled); record the headline output SQNR of each."""
    inner = [t for t in view.kept_tensors if t != view.input_name]
    pooled = {t: LayerAcc() for t in inner}
    for res in results.values():
        own = res.layers.get("layerwise", {})  # rank by a layer's own error when measured
        for t in inner:
            a, b = pooled[t], own.get(t, res.layers["full"][t])
            a.sxx, a.see = a.sxx + b.sxx, a.see + b.see
    worst = sorted(inner, key=lambda t: (pooled[t].sqnr(), t))[: opts.sensitivity_layers]
    float_runner = Runner(with_outputs(view.model, view.outputs))
    refs = {
        img.raw: {
            o: Reference.of(y, *clip_bounds(enc.activations[o]))
            for o, y in float_runner.run(read_raw(img.raw, tp, view.input_layout)).items()
        }
        for img in images
    }
    params_cache: ParamsCache = {}
    for layer in worst:
        others = frozenset(t for t in view.kept_tensors if t != layer)
        for kind, float_layers in (("enabled_only", others), ("disabled", frozenset([layer]))):
            model = build_quantized_model(
                view,
                enc,
                SimOptions(round_mode=mode, float_layers=float_layers),
                params_cache=params_cache,
            )
            runner = Runner(model)
            for img in images:
                out = runner.run(read_raw(img.raw, tp, view.input_layout))
                accs = (
                    results[img.scene]
                    .sensitivity.setdefault(layer, {})
                    .setdefault(kind, {o: LayerAcc() for o in view.outputs})
                )
                for o in view.outputs:
                    accs[o].add(refs[img.raw][o], Comparison.of(refs[img.raw][o], out[o]), img.path)


def gate_for(scene: str, p: EvaluateParams) -> Gate:
    """The scene's gate (its own keys over the default), never laxer than the floor."""
    g = p.gates.get(scene, Gate())
    d, floor = p.default_gate, p.gate_floor

    def pick(key: str, stricter: Callable[[float, float], float]) -> float | None:
        own: float | None = getattr(g, key) if getattr(g, key) is not None else getattr(d, key)
        bound: float | None = getattr(floor, key)
        if own is None or bound is None:
            return own if own is not None else bound
        return stricter(own, bound)

    return Gate(
        cosine_min=pick("cosine_min", max),
        sqnr_min_db=pick("sqnr_min_db", max),
        miss_rate_max=pick("miss_rate_max", min),
    )


@dataclass(frozen=True)
class GateFailure:
    scene: str
    metric: str
    value: float
    threshold: float
    worst_layer: str

    def line(self) -> str:
        return (
            f"scene {self.scene!r}: {self.metric} {self.value:.6g} fails its gate "
            f"{self.threshold!r}; worst layer {self.worst_layer}"
        )


def _row(i: int, t: str, view: ModelView, res: SceneResult, sig: str) -> dict[str, Any]:
    row: dict[str, Any] = {"layer_index": i, "layer": t, "op_type": view.producers.get(t, "Input")}
    row |= res.layers["full"][t].summary(sig)
    if "weights_only" in res.layers:
        w_s = res.layers["weights_only"][t].sqnr(sig)
        a_s = res.layers["activations_only"][t].sqnr(sig)
        row |= {
            "sqnr_weights_only_db": w_s,
            "sqnr_activations_only_db": a_s,
            "dominant": "weights" if w_s < a_s else "activations",
        }
    if "layerwise" in res.layers and t in res.layers["layerwise"]:
        row["sqnr_layerwise_db"] = res.layers["layerwise"][t].sqnr(sig)
    if t in res.tail:
        row["tail_ratio"] = float(np.mean(res.tail[t]))
    return row


def summarize(
    view: ModelView, results: dict[str, SceneResult], p: EvaluateParams
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]], list[GateFailure]]:
    """(metrics.json body per scene, per-scene layer rows, gate failures)."""
    metrics: dict[str, Any] = {}
    layer_rows: dict[str, list[dict[str, Any]]] = {}
    failures: list[GateFailure] = []
    sig = p.sqnr_signal
    headline = list(p.outputs) or view.outputs
    unknown = [o for o in headline if o not in view.outputs]
    if unknown:
        raise ParamsError(
            f"evaluate.outputs names {unknown}, which the model does not output; "
            f"its outputs are {view.outputs}"
        )
    for scene in sorted(results):
        res = results[scene]
        full = res.layers["full"]
        outs = {o: full[o].summary(sig) for o in view.outputs}
        out_sqnr = min(outs[o]["sqnr_db"] for o in headline)
        out_cos = min(outs[o]["cosine"] for o in headline)
        inner = [t for t in view.kept_tensors if t != view.input_name]
        # The layer to blame: lowest SQNR of its own (layerwise) error when measured, else of
        # the accumulated (oneshot) error.
        own = res.layers.get("layerwise", {})
        worst = min(inner, key=lambda t: ((own[t] if t in own else full[t]).sqnr(sig), t))
        rows = [_row(i, t, view, res, sig) for i, t in enumerate(view.kept_tensors)]
        layer_rows[scene] = rows
        worst_row = rows[view.kept_tensors.index(worst)]
        gate = gate_for(scene, p)
        m: dict[str, Any] = {
            "images": res.images,
            "output_sqnr_db": out_sqnr,
            "output_cosine": out_cos,
            "outputs": {
                o: {"sqnr_db": s["sqnr_db"], "cosine": s["cosine"]} for o, s in outs.items()
            },
            "worst_layer": worst,
            "worst_layer_sqnr_db": worst_row["sqnr_db"],
            "worst_layer_clip_rate": worst_row["clip_rate"],
            "worst_layer_dominant": worst_row.get("dominant", "n/a"),
        }
        if "sqnr_layerwise_db" in worst_row:
            m["worst_layer_own_sqnr_db"] = worst_row["sqnr_layerwise_db"]
        if res.detections is not None:
            m["faces"] = res.detections.summary()
        if res.sensitivity:
            m["sensitivity"] = {
                layer: {kind: _headline_of(view, headline, accs) for kind, accs in kinds.items()}
                for layer, kinds in sorted(res.sensitivity.items())
            }
        m["gate"] = {k: v for k, v in vars(gate).items() if v is not None}
        found = gate_failures(scene, m)
        failures += found
        m["gate"]["passed"] = not found
        metrics[scene] = m
    return metrics, layer_rows, failures


def oneshot_metrics(
    view: ModelView,
    enc: Encodings,
    images: Sequence[EvalImage],
    tp: TensorsParams,
    ep: EvaluateParams,
    decoder: str,
    round_mode: str,
) -> dict[str, Any]:
    """Per-scene metrics of ``enc`` on ``images``, oneshot only (no attribution, layerwise or
    sweep): what comparing alternative encodings needs."""
    opts = EvalOptions(
        attribution=False,
        layerwise=False,
        sensitivity_layers=0,
        decoder=decoder,
        detection_threshold=ep.detection_threshold,
        round_mode=round_mode,
    )
    metrics, _, _ = summarize(view, run_evaluation(view, enc, images, tp, opts), ep)
    return metrics


GATE_CHECKS = (  # (label, metric path in a scene's metrics, gate key, value must be at least)
    ("output cosine", ("output_cosine",), "cosine_min", True),
    ("output SQNR dB", ("output_sqnr_db",), "sqnr_min_db", True),
    ("face miss rate", ("faces", "miss_rate"), "miss_rate_max", False),
)


def gate_failures(scene: str, m: Mapping[str, Any]) -> list[GateFailure]:
    """A scene's failures from its metrics block (used by the stage and by ``fieldcal gate``)."""
    out = []
    for label, path, key, at_least in GATE_CHECKS:
        bound = m["gate"].get(key)
        value: Any = m
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        if bound is None or value is None:
            continue
        if (value < bound) if at_least else (value > bound):
            out.append(GateFailure(scene, label, float(value), float(bound), m["worst_layer"]))
    return out


def _headline_of(view: ModelView, headline: list[str], accs: dict[str, LayerAcc]) -> float:
    """Output SQNR (min over the headline outputs) of a sensitivity variant."""
    del view
    return min(accs[o].sqnr() for o in headline)


def metrics_document(
    scenes: dict[str, Any],
    qp: QuantizeParams,
    ep: EvaluateParams,
    model_path: Path,
    model_sha: str,
) -> dict[str, Any]:
    """``metrics.json``: run facts, then one block per scene (hierarchical for dvc metrics)."""
    a, w = qp.activations, qp.weights
    granularity = "per-channel" if w.per_channel else "per-tensor"
    return {
        "run": {
            "model": model_path.as_posix(),
            "model_sha256": model_sha,
            "backend": qp.backend,
            "activations": f"{a.mode} {a.bitwidth}-bit",
            "weights": f"{w.mode} {w.bitwidth}-bit {granularity}",
            "bias_bitwidth": qp.bias_bitwidth,
            "sqnr_signal": ep.sqnr_signal,
        },
        "passed": all(s["gate"]["passed"] for s in scenes.values()),
        "scenes": scenes,
    }


LAYER_CSV_COLUMNS = (
    "layer_index",
    "layer",
    "op_type",
    "sqnr_db",
    "cosine",
    "mse",
    "max_abs_error",
    "clip_rate",
    "sqnr_weights_only_db",
    "sqnr_activations_only_db",
    "dominant",
    "sqnr_layerwise_db",
    "sqnr_inference_db",
    "mean_image_sqnr_db",
    "tail_ratio",
)


def write_layer_csvs(folder: Path, layer_rows: dict[str, list[dict[str, Any]]]) -> None:
    """One CSV per scene (``dvc plots`` draws each file), stale scene files removed."""
    import csv
    import io

    from pipeline.atomic import write_text

    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.csv"):
        if stale.stem not in layer_rows:
            stale.unlink()
    for scene, rows in layer_rows.items():
        buf = io.StringIO()
        wr = csv.writer(buf, lineterminator="\n")
        wr.writerow(LAYER_CSV_COLUMNS)
        for r in rows:
            wr.writerow([_csv_cell(r.get(c, "")) for c in LAYER_CSV_COLUMNS])
        write_text(folder / f"{scene}.csv", buf.getvalue())


def _csv_cell(v: Any) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def write_scene_csv(path: Path, scenes: dict[str, Any]) -> None:
    """One row per scene for the per-scene bar chart (``dvc plots``)."""
    from pipeline.atomic import write_text

    lines = ["scene,output_sqnr_db,output_cosine,face_miss_rate"]
    for scene, m in sorted(scenes.items()):
        miss = m.get("faces", {}).get("miss_rate", "")
        cells = [scene, m["output_sqnr_db"], m["output_cosine"], miss]
        lines.append(",".join(_csv_cell(c) for c in cells))
    write_text(path, "\n".join(lines) + "\n")
