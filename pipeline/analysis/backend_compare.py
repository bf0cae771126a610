"""The same encodings judged on two backends: fieldcal's embedded simulation and a real one.

Per scene and per model output: float vs each backend (SQNR, cosine), the backends against each
other (SQNR between the two; the share of elements that differ by 0, 1 and more than 1
quantization step of the output's encoding), the face miss rate on each, and whether the
scene's gate gives the same verdict on both. Sums of squares accumulate in float64 over every
element of every image of a scene, as :mod:`pipeline.analysis.evaluate` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from pipeline.analysis.detect import DECODERS, Agreement
from pipeline.analysis.gates import gate_for
from pipeline.analysis.metrics import cosine, sqnr_db
from pipeline.analysis.runs import EvalImage
from pipeline.data.tensors import read_raw
from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView
from pipeline.params import EvaluateParams, TensorsParams
from pipeline.quantization.encoding import Encoding, RoundMode
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.simulate import SimOptions, build_quantized_model

Outputs = dict[str, NDArray[np.float32]]


class QuantizedBackend(Protocol):
    """Runs one quantized model on images (the seam W-A's pipeline/backends/base.py names)."""

    name: str

    def versions(self) -> dict[str, str]: ...

    def run_images(
        self, images: Sequence[NDArray[np.float32]], progress: Callable[[int], None]
    ) -> list[Outputs]: ...


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


@dataclass(frozen=True)
class StepShares:
    """Share of elements whose quantized values differ by 0, 1 and more than 1 step."""

    equal: float
    one: float
    more: float


@dataclass(frozen=True)
class OutputComparison:
    output: str
    float_vs_embedded_sqnr_db: float
    float_vs_embedded_cosine: float
    float_vs_backend_sqnr_db: float
    float_vs_backend_cosine: float
    backend_vs_embedded_sqnr_db: float
    steps: StepShares


@dataclass(frozen=True)
class Verdict:
    """A scene's gate on one backend: headline cosine / SQNR (min over the headline outputs),
    face miss rate (None without a decoder), and whether the gate passes."""

    cosine: float
    sqnr_db: float
    miss_rate: float | None
    passed: bool


@dataclass(frozen=True)
class SceneComparison:
    scene: str
    images: int
    outputs: tuple[OutputComparison, ...]
    embedded: Verdict
    backend: Verdict

    @property
    def verdicts_agree(self) -> bool:
        return self.embedded.passed == self.backend.passed


@dataclass(frozen=True)
class BackendComparison:
    """What the report shows beside the embedded columns; ``metrics.json`` holds
    :meth:`to_json` under ``backends.<backend>``."""

    backend: str
    versions: Mapping[str, str]
    qdq_model_sha256: str
    scenes: tuple[SceneComparison, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "versions": dict(self.versions),
            "qdq_model_sha256": self.qdq_model_sha256,
            "verdicts_agree": all(s.verdicts_agree for s in self.scenes),
            "scenes": {s.scene: _scene_json(s) for s in self.scenes},
        }


def _scene_json(s: SceneComparison) -> dict[str, Any]:
    def verdict(v: Verdict) -> dict[str, Any]:
        return {
            "output_cosine": v.cosine,
            "output_sqnr_db": v.sqnr_db,
            "miss_rate": v.miss_rate,
            "passed": v.passed,
        }

    return {
        "images": s.images,
        "embedded": verdict(s.embedded),
        "backend": verdict(s.backend),
        "verdicts_agree": s.verdicts_agree,
        "outputs": {
            o.output: {
                "float_vs_embedded": {
                    "sqnr_db": o.float_vs_embedded_sqnr_db,
                    "cosine": o.float_vs_embedded_cosine,
                },
                "float_vs_backend": {
                    "sqnr_db": o.float_vs_backend_sqnr_db,
                    "cosine": o.float_vs_backend_cosine,
                },
                "backend_vs_embedded": {
                    "sqnr_db": o.backend_vs_embedded_sqnr_db,
                    "steps_0": o.steps.equal,
                    "steps_1": o.steps.one,
                    "steps_more": o.steps.more,
                },
            }
            for o in s.outputs
        },
    }


def step_counts(a: NDArray[np.float32], b: NDArray[np.float32], e: Encoding) -> NDArray[np.int64]:
    """Elements whose grid indices under ``e`` differ by 0, 1 and more than 1 (3 counts)."""
    d = np.abs(np.rint(a.astype(np.float64) / e.scale) - np.rint(b.astype(np.float64) / e.scale))
    return np.array([np.count_nonzero(d == 0), np.count_nonzero(d == 1), np.count_nonzero(d > 1)])


@dataclass
class _SceneAcc:
    images: int = 0
    float_emb: dict[str, _Pair] = field(default_factory=dict)
    float_back: dict[str, _Pair] = field(default_factory=dict)
    back_emb: dict[str, _Pair] = field(default_factory=dict)
    steps: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    faces_emb: Agreement = field(default_factory=Agreement)
    faces_back: Agreement = field(default_factory=Agreement)
    decoded: bool = False


@dataclass(frozen=True)
class ImageOutputs:
    """One image's outputs from the float model, the embedded simulation and the backend."""

    scene: str
    path: str
    float_: Outputs
    embedded: Outputs
    backend: Outputs


def _add(
    acc: _SceneAcc, img: ImageOutputs, enc: Mapping[str, Encoding], decoder: str, threshold: float
) -> None:
    acc.images += 1
    for o in enc:
        f, e, b = img.float_[o], img.embedded[o], img.backend[o]
        acc.float_emb.setdefault(o, _Pair()).add(f, e)
        acc.float_back.setdefault(o, _Pair()).add(f, b)
        acc.back_emb.setdefault(o, _Pair()).add(e, b)
        acc.steps[o] = acc.steps.get(o, np.zeros(3, np.int64)) + step_counts(e, b, enc[o])
    found = DECODERS.get(decoder)
    if found is not None and all(k in img.float_ for k in found[1]):
        fn, needed = found
        acc.decoded = True

        def boxes(outs: Outputs) -> Any:
            return fn({k: outs[k][0] for k in needed}, threshold)

        ref = boxes(img.float_)
        acc.faces_emb.add(ref, boxes(img.embedded), img.path)
        acc.faces_back.add(ref, boxes(img.backend), img.path)


def _verdict(
    scene: str,
    pairs: Mapping[str, _Pair],
    headline: Sequence[str],
    faces: Agreement,
    decoded: bool,
    ep: EvaluateParams,
) -> Verdict:
    cos = min(pairs[o].cosine() for o in headline)
    sq = min(pairs[o].sqnr_db() for o in headline)
    miss = faces.summary().miss_rate if decoded else None
    g = gate_for(scene, ep)
    passed = (g.cosine_min is None or cos >= g.cosine_min) and (
        g.sqnr_min_db is None or sq >= g.sqnr_min_db
    )
    if g.miss_rate_max is not None and miss is not None:
        passed = passed and miss <= g.miss_rate_max
    return Verdict(cos, sq, miss, passed)


def compare(
    images: Iterable[ImageOutputs],
    output_encodings: Mapping[str, Encoding],
    ep: EvaluateParams,
    decoder: str,
) -> list[SceneComparison]:
    """Accumulate per scene, then each scene's comparison and verdicts (scenes sorted)."""
    accs: dict[str, _SceneAcc] = {}
    for img in images:
        _add(
            accs.setdefault(img.scene, _SceneAcc()),
            img,
            output_encodings,
            decoder,
            ep.detection_threshold,
        )
    headline = list(ep.outputs) or list(output_encodings)
    out = []
    for scene in sorted(accs):
        a = accs[scene]
        outputs = tuple(
            OutputComparison(
                o,
                a.float_emb[o].sqnr_db(),
                a.float_emb[o].cosine(),
                a.float_back[o].sqnr_db(),
                a.float_back[o].cosine(),
                a.back_emb[o].sqnr_db(),
                StepShares(*(a.steps[o] / max(int(a.steps[o].sum()), 1)).tolist()),
            )
            for o in output_encodings
        )
        emb = _verdict(scene, a.float_emb, headline, a.faces_emb, a.decoded, ep)
        back = _verdict(scene, a.float_back, headline, a.faces_back, a.decoded, ep)
        out.append(SceneComparison(scene, a.images, outputs, emb, back))
    return out


def evaluate_on_backend(
    images: Sequence[tuple[str, str, NDArray[np.float32]]],
    reference: Callable[[NDArray[np.float32]], tuple[Outputs, Outputs]],
    backend: QuantizedBackend,
    output_encodings: Mapping[str, Encoding],
    ep: EvaluateParams,
    decoder: str,
) -> list[SceneComparison]:
    """``images`` as (scene, path, input tensor); ``reference(x)`` gives the float and the
    embedded outputs of one image; the backend runs them all (cached, maybe in parallel)."""
    from pipeline.progress import progress

    with progress(f"evaluating on {backend.name}", len(images)) as advance:
        got = backend.run_images([x for _, _, x in images], advance)

    def each() -> Iterable[ImageOutputs]:
        for (scene, path, x), b in zip(images, got, strict=True):
            f, e = reference(x)
            yield ImageOutputs(scene, path, f, e, b)

    return compare(each(), output_encodings, ep, decoder)


@dataclass(frozen=True)
class HtpRun:
    """How the stage runs the QDQ model on the HTP: the model, the cache root
    (``paths.cache``; None: no cache), processes, and the simulation's round mode and decoder."""

    qdq_model: Path
    cache: Path | None
    workers: int
    round_mode: RoundMode
    decoder: str


def evaluate_htp(
    view: ModelView,
    enc: Encodings,
    images: Sequence[EvalImage],
    tp: TensorsParams,
    ep: EvaluateParams,
    run: HtpRun,
) -> BackendComparison:
    """Every evaluation image on the HTP beside the float model and the embedded simulation."""
    from pipeline.backends.htp_runner import HtpBackend
    from pipeline.backends.qnn_htp import input_shape

    shape = input_shape(tp.height, tp.width, view.input_layout)
    backend = HtpBackend(run.qdq_model, shape, run.cache, run.workers)
    outputs = list(view.outputs)
    flt = Runner(view.model)
    sim = Runner(build_quantized_model(view, enc, SimOptions(round_mode=run.round_mode)))

    def reference(x: NDArray[np.float32]) -> tuple[Outputs, Outputs]:
        return flt.run(x, outputs), sim.run(x, outputs)

    tensors = [(i.scene, i.path, read_raw(i.raw, tp, view.input_layout)) for i in images]
    encs = {o: enc.activations[o] for o in outputs}
    scenes = evaluate_on_backend(tensors, reference, backend, encs, ep, run.decoder)
    return BackendComparison(backend.name, backend.versions(), backend.model_sha256, tuple(scenes))
