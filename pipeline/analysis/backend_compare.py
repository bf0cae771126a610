"""The same encodings judged on two backends: fieldcal's embedded simulation and a real one.

Both sides go through the backend seam (:mod:`pipeline.backends.base`): the embedded backend
and the HTP backend each ``prepare`` the quantized model of ``(view, enc)`` returning the model
outputs and the kept tensors asked for. Per scene and per model output: float vs each backend
(SQNR, cosine), the backends against each other (SQNR between the two; the share of elements
that differ by 0, 1 and more than 1 quantization step of the output's encoding), the face miss
rate on each, and whether the scene's gate gives the same verdict on both. Per kept tensor,
over every image: the share of elements on the same step and the SQNR between the two
(:class:`~pipeline.analysis.artifacts.LayerAgreement`, the offline counterpart of Qualcomm's
accuracy debugger). Sums of squares accumulate in float64 over every element of every image,
as :mod:`pipeline.analysis.evaluate` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.analysis.artifacts import (
    BackendAgreement,
    BackendComparison,
    BackendOutput,
    BackendScene,
    BackendVerdict,
    LayerAgreement,
    OutputMetric,
)
from pipeline.analysis.detect import DECODERS, Agreement
from pipeline.analysis.gates import gate_for
from pipeline.analysis.metrics import cosine, sqnr_db
from pipeline.analysis.runs import EvalImage
from pipeline.backends.base import QuantizedModel, Tensors, run_many
from pipeline.data.tensors import read_raw
from pipeline.errors import DataError
from pipeline.graph.load import sha256_file
from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView
from pipeline.params import EvaluateParams, TensorsParams
from pipeline.quantization.encoding import Encoding, RoundMode
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.simulate import Requant


@dataclass
class _Pair:
    """Sums over the elements of two tensors: sum x^2, y^2, x*y (float64)."""

    sxx: float = 0.0
    syy: float = 0.0
    sxy: float = 0.0

    def add(self, x: NDArray[np.float32], y: NDArray[np.float32]) -> None:
        a, b = x.astype(np.float64).ravel(), y.astype(np.float64).ravel()
        self.sxx += float(a @ a)
        self.syy += float(b @ b)
        self.sxy += float(a @ b)

    def sqnr_db(self) -> float:
        return sqnr_db(self.sxx, max(self.sxx + self.syy - 2.0 * self.sxy, 0.0))

    def cosine(self) -> float:
        return cosine(self.sxy, self.sxx, self.syy)

    def metric(self) -> OutputMetric:
        return OutputMetric(sqnr_db=self.sqnr_db(), cosine=self.cosine())


def step_counts(a: NDArray[np.float32], b: NDArray[np.float32], e: Encoding) -> NDArray[np.int64]:
    """Elements whose grid indices under ``e`` differ by 0, 1 and more than 1 (3 counts)."""
    d = np.abs(np.rint(a.astype(np.float64) / e.scale) - np.rint(b.astype(np.float64) / e.scale))
    return np.array([np.count_nonzero(d == 0), np.count_nonzero(d == 1), np.count_nonzero(d > 1)])


@dataclass
class _StepPair:
    """A tensor's embedded-vs-backend sums and step counts."""

    pair: _Pair = field(default_factory=_Pair)
    steps: NDArray[np.int64] = field(default_factory=lambda: np.zeros(3, np.int64))

    def add(self, emb: NDArray[np.float32], back: NDArray[np.float32], e: Encoding) -> None:
        self.pair.add(emb, back)
        self.steps += step_counts(emb, back, e)

    def shares(self) -> list[float]:
        total = max(int(self.steps.sum()), 1)
        return [int(n) / total for n in self.steps]


@dataclass
class _SceneAcc:
    images: int = 0
    float_emb: dict[str, _Pair] = field(default_factory=dict)
    float_back: dict[str, _Pair] = field(default_factory=dict)
    back_emb: dict[str, _StepPair] = field(default_factory=dict)
    faces_emb: Agreement = field(default_factory=Agreement)
    faces_back: Agreement = field(default_factory=Agreement)
    decoded: bool = False


@dataclass(frozen=True)
class ImageOutputs:
    """One image's tensors from the float model, the embedded simulation and the backend."""

    scene: str
    path: str
    float_: Tensors
    embedded: Tensors
    backend: Tensors


@dataclass(frozen=True)
class Compared:
    """What to compare: the model outputs and the kept tensors compared per layer, each with
    its activation encoding, and each layer's op type."""

    outputs: Mapping[str, Encoding]
    layers: Mapping[str, Encoding]
    op_types: Mapping[str, str]


def _add(acc: _SceneAcc, img: ImageOutputs, what: Compared, decoder: str, thr: float) -> None:
    acc.images += 1
    for o, e in what.outputs.items():
        f, emb, b = img.float_[o], img.embedded[o], img.backend[o]
        acc.float_emb.setdefault(o, _Pair()).add(f, emb)
        acc.float_back.setdefault(o, _Pair()).add(f, b)
        acc.back_emb.setdefault(o, _StepPair()).add(emb, b, e)
    found = DECODERS.get(decoder)
    if found is not None and all(k in img.float_ for k in found[1]):
        fn, needed = found
        acc.decoded = True

        def boxes(outs: Tensors) -> Any:
            return fn({k: outs[k][0] for k in needed}, thr)

        ref = boxes(img.float_)
        acc.faces_emb.add(ref, boxes(img.embedded), img.path)
        acc.faces_back.add(ref, boxes(img.backend), img.path)


def _verdict(
    scene: str,
    pairs: Mapping[str, _Pair],
    headline: Sequence[str],
    acc: _SceneAcc,
    faces: Agreement,
    ep: EvaluateParams,
) -> BackendVerdict:
    cos = min(pairs[o].cosine() for o in headline)
    sq = min(pairs[o].sqnr_db() for o in headline)
    miss = faces.summary().miss_rate if acc.decoded else None
    g = gate_for(scene, ep)
    passed = (g.cosine_min is None or cos >= g.cosine_min) and (
        g.sqnr_min_db is None or sq >= g.sqnr_min_db
    )
    if g.miss_rate_max is not None and miss is not None:
        passed = passed and miss <= g.miss_rate_max
    return BackendVerdict(output_cosine=cos, output_sqnr_db=sq, miss_rate=miss, passed=passed)


def _scene(scene: str, a: _SceneAcc, what: Compared, ep: EvaluateParams) -> BackendScene:
    headline = list(ep.outputs) or list(what.outputs)
    outputs = {}
    for o in what.outputs:
        s0, s1, more = a.back_emb[o].shares()
        outputs[o] = BackendOutput(
            float_vs_embedded=a.float_emb[o].metric(),
            float_vs_backend=a.float_back[o].metric(),
            backend_vs_embedded=BackendAgreement(
                sqnr_db=a.back_emb[o].pair.sqnr_db(), steps_0=s0, steps_1=s1, steps_more=more
            ),
        )
    emb = _verdict(scene, a.float_emb, headline, a, a.faces_emb, ep)
    back = _verdict(scene, a.float_back, headline, a, a.faces_back, ep)
    return BackendScene(
        images=a.images,
        embedded=emb,
        backend=back,
        verdicts_agree=emb.passed == back.passed,
        outputs=outputs,
    )


def compare(
    images: Iterable[ImageOutputs], what: Compared, ep: EvaluateParams, decoder: str
) -> tuple[dict[str, BackendScene], list[LayerAgreement]]:
    """Accumulate per scene and per layer, then each scene's comparison and verdicts (scenes
    sorted) and the layers in ``what.layers``' order."""
    accs: dict[str, _SceneAcc] = {}
    layers = {t: _StepPair() for t in what.layers}
    for img in images:
        _add(accs.setdefault(img.scene, _SceneAcc()), img, what, decoder, ep.detection_threshold)
        for t, e in what.layers.items():
            layers[t].add(img.embedded[t], img.backend[t], e)
    scenes = {s: _scene(s, accs[s], what, ep) for s in sorted(accs)}
    rows = [
        LayerAgreement(
            layer=t, op_type=what.op_types[t], equal=acc.shares()[0], sqnr_db=acc.pair.sqnr_db()
        )
        for t, acc in layers.items()
    ]
    return scenes, rows


def evaluate_on_backend(
    images: Sequence[tuple[str, str, NDArray[np.float32]]],
    reference: Callable[[NDArray[np.float32]], tuple[Tensors, Tensors]],
    model: QuantizedModel,
    what: Compared,
    ep: EvaluateParams,
    decoder: str,
) -> tuple[dict[str, BackendScene], list[LayerAgreement]]:
    """``images`` as (scene, path, input tensor); ``reference(x)`` gives the float and the
    embedded tensors of one image; ``model`` (a backend's) runs them all, in one go where it
    batches (the HTP: cached, maybe in parallel)."""
    from pipeline.progress import progress

    with progress("evaluating on the backend", len(images)) as advance:
        got = run_many(model, [x for _, _, x in images], advance)

    def each() -> Iterable[ImageOutputs]:
        for (scene, path, x), b in zip(images, got, strict=True):
            f, e = reference(x)
            yield ImageOutputs(scene, path, f, e, b)

    return compare(each(), what, ep, decoder)


@dataclass(frozen=True)
class HtpRun:
    """How the stage runs the encodings on the HTP: the quantize stage's QDQ model (the export
    must reproduce it), the cache root (``paths.cache``; None: no cache), processes, and the
    simulation's round mode and decoder; ``layers``: also compare every kept tensor."""

    qdq_model: Path
    cache: Path | None
    workers: int
    round_mode: RoundMode
    decoder: str
    layers: bool = True
    requant: Requant = "reference"  # the embedded simulation's (evaluate.simulation)


def compared(view: ModelView, enc: Encodings, layers: bool) -> Compared:
    """The view's outputs and (``layers``) its kept tensors other than the input."""
    kept = [t for t in view.kept_tensors if t != view.input_name and t in enc.activations]
    ops = {t: view.producers.get(t, "?") for t in kept}
    for op in view.weighted:  # a fused group by its Conv: "Conv+Relu"
        ops[op.output] = op.op_type + ("+Relu" if op.output != op.conv_output else "")
    return Compared(
        outputs={o: enc.activations[o] for o in view.outputs},
        layers={t: enc.activations[t] for t in kept} if layers else {},
        op_types={t: ops[t] for t in kept},
    )


def evaluate_htp(
    view: ModelView,
    enc: Encodings,
    images: Sequence[EvalImage],
    tp: TensorsParams,
    ep: EvaluateParams,
    run: HtpRun,
) -> BackendComparison:
    """Every evaluation image on the HTP beside the float model and the embedded simulation."""
    from pipeline.backends.embedded import EmbeddedBackend
    from pipeline.backends.htp_runner import HtpBackend, HtpConfig
    from pipeline.backends.qnn_htp import input_shape

    shape = input_shape(tp.height, tp.width, view.input_layout)
    htp = HtpBackend(HtpConfig(shape, run.cache, run.workers, {}, run.round_mode))
    what = compared(view, enc, run.layers)
    tensors = [*what.outputs, *(t for t in what.layers if t not in what.outputs)]
    model = htp.prepare(view, enc, tensors)
    if run.qdq_model.is_file() and sha256_file(run.qdq_model) != model.deployable_sha256:
        raise DataError(
            f"{run.qdq_model} is not the QDQ export of the encodings evaluated; "
            "run `dvc repro quantize`"
        )
    flt = Runner(view.model)
    sim = EmbeddedBackend(run.round_mode, run.requant).prepare(view, enc, tensors)
    outputs = list(view.outputs)

    def reference(x: NDArray[np.float32]) -> tuple[Tensors, Tensors]:
        return flt.run(x, outputs), sim.run(x)

    xs = [(i.scene, i.path, read_raw(i.raw, tp, view.input_layout)) for i in images]
    scenes, layers = evaluate_on_backend(xs, reference, model, what, ep, run.decoder)
    return BackendComparison(
        backend=htp.name,
        versions=htp.versions(),
        qdq_model_sha256=model.deployable_sha256,
        simulation=run.requant,
        verdicts_agree=all(s.verdicts_agree for s in scenes.values()),
        scenes=scenes,
        layers=layers,
    )
