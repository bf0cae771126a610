"""The remedies stage's files: every remedy's encodings, each scene's chosen one, the one for
the car (``ship.json``) and QDQ models of the chosen and shipped encodings.

QDQ models go only to the encodings a deployment uses (each scene's chosen remedy and the car's
configuration): one is the size of the model (7 MB for the demo's), and a model for every remedy
tried would multiply that by about twenty. Any other remedy's QDQ model is one call away:
``pipeline.quantization.qdq.export_qdq(view, encodings)`` on its ``all/`` file.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.analysis import artifacts
from pipeline.analysis.candidates import Remedy
from pipeline.analysis.remedies import Found
from pipeline.analysis.remedy_artifacts import SHARED
from pipeline.atomic import write_bytes, write_json
from pipeline.graph.view import ModelView
from pipeline.layout import RemediesOut
from pipeline.quantization import encodings_json
from pipeline.quantization.encoding import RoundMode
from pipeline.quantization.qdq import export_qdq


def _write(path: Path, r: Remedy, scene: str | None, view: ModelView) -> None:
    args = {
        "fieldcal": {
            "remedy": r.name,
            "scene": scene if scene is not None else "every scene",
            "cost": r.cost,
            "model_sha256": view.sha256,
        }
    }
    write_json(path, encodings_json.to_1_0_0(r.encodings, args))


def write_all(out: RemediesOut, found: Found, view: ModelView, round_mode: RoundMode) -> None:
    """Every file of the remedies stage (module docstring) and ``remedies.json``."""
    out.qdq.mkdir(parents=True, exist_ok=True)  # a DVC output even when nothing passes
    written: set[str] = set()
    for scene, s in sorted(found.scenes.items()):
        for r in s.tried:
            own = None if r.name in SHARED else scene
            key = f"{own}.{r.name}" if own else r.name
            if key not in written:
                _write(out.remedy_encodings(r.name, own), r, own, view)
                written.add(key)
        if s.chosen is not None:
            _write(out.scene_encodings(scene), s.chosen, scene, view)
            qdq = export_qdq(view, s.chosen.encodings, round_mode)
            write_bytes(out.qdq_model(scene), qdq.SerializeToString())
    if found.ship is not None:
        _write(out.ship, found.ship, None, view)
        qdq = export_qdq(view, found.ship.encodings, round_mode)
        write_bytes(out.qdq_model("ship"), qdq.SerializeToString())
    # always present (a DVC output): which scene has chosen encodings in this folder
    write_json(out.chosen, {scene: s.verdict.chosen for scene, s in found.scenes.items()})
    artifacts.write(out.remedies, {scene: s.verdict for scene, s in found.scenes.items()})
