"""Each scene's chosen remedy re-judged on the real backend.

The remedies stage picks, per scene, the cheapest remedy that passes the scene's gate on the
embedded simulation, and writes its QDQ model (``out/remedies/qdq/<scene>.qdq.onnx``,
:mod:`pipeline.analysis.remedy_files`). With ``evaluate.backend: qnn-htp`` that very model runs
on the HTP on the scene's evaluation images beside the simulation
(:mod:`pipeline.analysis.backend_compare`): ``out/remedies/recheck.json`` says, per scene,
whether the HTP agrees with the embedded verdict (``backend`` None on the embedded backend).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from pipeline.analysis.artifacts import RemedyOnBackend, RemedyRecheck
from pipeline.analysis.backend_compare import compared, evaluate_on_backend
from pipeline.analysis.runs import EvalImage
from pipeline.backends.base import Tensors
from pipeline.backends.htp_runner import HtpModel
from pipeline.backends.qnn_htp import HtpFallbackError
from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView
from pipeline.layout import RemediesOut
from pipeline.params import Params
from pipeline.quantization.encodings import Encodings

if TYPE_CHECKING:
    from pipeline.analysis.remedies import Found


@dataclass(frozen=True)
class Chosen:
    """A scene's chosen remedy: its name and encodings."""

    remedy: str
    encodings: Encodings


def recheck(
    view: ModelView,
    chosen: Mapping[str, Chosen],
    images: Sequence[EvalImage],
    params: Params,
    out: RemediesOut,
) -> RemedyRecheck:
    """On ``evaluate.backend: qnn-htp``, judge every chosen remedy's QDQ model (written by
    the remedies stage) on the HTP on its scene's evaluation images. Writes ``out.recheck``
    and returns it."""
    doc = RemedyRecheck(backend=None, versions={}, scenes={})
    if params.evaluate.backend == "qnn-htp":
        doc = _on_htp(view, chosen, images, params, out)
    from pipeline.analysis import artifacts

    artifacts.write(out.recheck, doc)
    return doc


def _on_htp(
    view: ModelView,
    chosen: Mapping[str, Chosen],
    images: Sequence[EvalImage],
    params: Params,
    out: RemediesOut,
) -> RemedyRecheck:
    import os

    from pipeline.backends.embedded import EmbeddedBackend
    from pipeline.backends.htp_runner import HtpBackend, HtpConfig
    from pipeline.backends.qnn_htp import input_shape
    from pipeline.data.tensors import read_raw

    tp, ep, qp = params.tensors, params.evaluate, params.quantize
    shape = input_shape(tp.height, tp.width, view.input_layout)
    config = HtpConfig(shape, params.paths.cache, os.cpu_count() or 1, {}, qp.round_mode)
    htp = HtpBackend(config)
    flt = Runner(view.model)
    scenes = {}
    for scene, c in sorted(chosen.items()):
        what = compared(view, c.encodings, layers=False)
        model = htp.open(out.qdq_model(scene))  # the deployable file itself (mixed 8/16-bit
        # remedies included: the export converts at their boundaries, quantization/mixed.py)
        sim = EmbeddedBackend(qp.round_mode, params.evaluate.simulation).prepare(
            view, c.encodings, list(what.outputs)
        )

        def reference(x: NDArray[np.float32]) -> tuple[Tensors, Tensors]:
            return flt.run(x, list(what.outputs)), sim.run(x)  # noqa: B023 (used in this loop)

        xs = [
            (i.scene, i.path, read_raw(i.raw, tp, view.input_layout))
            for i in images
            if i.scene == scene
        ]
        try:
            found, _ = evaluate_on_backend(xs, reference, model, what, ep, params.model.decoder)
        except HtpFallbackError as err:
            scenes[scene] = _failed(c.remedy, out.qdq_model(scene), model, _first(err))
            print(f"remedies: {scene}: {c.remedy} does not run on the HTP: {_first(err)}")
            continue
        s = found[scene]
        scenes[scene] = RemedyOnBackend(
            remedy=c.remedy,
            qdq_model=out.qdq_model(scene).as_posix(),
            qdq_model_sha256=model.deployable_sha256,
            embedded=s.embedded,
            backend=s.backend,
            verdicts_agree=s.verdicts_agree,
            backend_vs_embedded_sqnr_db=min(
                o.backend_vs_embedded.sqnr_db for o in s.outputs.values()
            ),
        )
    return RemedyRecheck(backend=htp.name, versions=htp.versions(), scenes=scenes)


def _first(err: Exception) -> str:
    lines = str(err).splitlines()
    nodes = next((ln for ln in lines if ln.startswith("Nodes the QNN EP did not take")), "")
    return f"{lines[0]} {nodes}".strip()


def _failed(remedy: str, path: Path, model: HtpModel, why: str) -> RemedyOnBackend:
    return RemedyOnBackend(
        remedy=remedy,
        qdq_model=path.as_posix(),
        qdq_model_sha256=model.deployable_sha256,
        embedded=None,
        backend=None,
        verdicts_agree=None,
        backend_vs_embedded_sqnr_db=None,
        error=why,
    )


def chosen_of(found: Found) -> dict[str, Chosen]:
    """The remedies stage's chosen remedy per scene (scenes none passes left out)."""
    return {
        s: Chosen(r.chosen.name, r.chosen.encodings)
        for s, r in found.scenes.items()
        if r.chosen is not None
    }


def read(path: Path) -> RemedyRecheck:
    return RemedyRecheck.model_validate_json(path.read_text(encoding="utf-8"))
