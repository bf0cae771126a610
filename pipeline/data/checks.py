"""``fieldcal params check``: params.yaml against what DVC needs and what the data holds.

Pydantic validates each value (:mod:`pipeline.params`); this adds what needs more than the
file: the keys ``dvc.yaml`` reads must be present (DVC has no defaults), and the scene names in
``curate.calibration``, ``curate.evaluation`` and ``evaluate.gates`` must name scenes the
manifest, a sidecar or the automatic rule knows. The curate stage runs the same scene check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from pipeline.data.scenes import SceneNameCheck, check_scene_names
from pipeline.data.sidecars import declared_scenes
from pipeline.layout import Layout
from pipeline.params import CurateParams, Params, load_params

# What dvc.yaml declares (as `params:` or `${...}`): DVC needs each of these in the file itself,
# defaults or not (tests/test_params.py checks this list against dvc.yaml). `compute` is not
# among them: its default (local processes) applies when it is absent.
DVC_PARAMS = (
    "paths",
    "paths.datasets",
    "model.path",
    "model.decoder",
    "ingest",
    "ingest.allowed_roots",
    "curate",
    "curate.seed",
    "tensors",
    "tensors.height",
    "tensors.width",
    "quantize",
    "quantize.fold_batchnorm",
    "quantize.round_mode",
    "evaluate",
    "evaluate.gates",
    "evaluate.worst_layers",
    "coverage",
    "coverage.clip_rate_max",
    "remedies",
    "stability",
    "report",
    "compile",
)


def missing_keys(data: dict[str, object]) -> list[str]:
    """The keys of :data:`DVC_PARAMS` that ``data`` (params.yaml as read) lacks."""
    missing = []
    for key in DVC_PARAMS:
        node: object = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) and part in node else KeyError
        if node is KeyError:
            missing.append(key)
    return missing


def scene_names_used(p: CurateParams, gates: Iterable[str]) -> dict[str, list[str]]:
    """Where params name scenes -> the names."""
    return {
        "curate.calibration": sorted(p.calibration),
        "curate.evaluation": sorted(p.evaluation),
        "evaluate.gates": sorted(gates),
    }


def manifest_scenes(manifest: pa.Table) -> set[str]:
    """Scenes of the manifest's ok images."""
    ok = manifest.filter(pc.equal(manifest.column("status"), "ok"))
    return {s for s in ok.column("scene").to_pylist() if s}


def scene_check(params: Params, datasets: Path, manifest: pa.Table | None) -> SceneNameCheck:
    """The scene names of ``params`` against the manifest (None: no images known yet) and the
    sidecars under ``datasets``."""
    used = scene_names_used(params.curate, params.evaluate.gates)
    with_images = manifest_scenes(manifest) if manifest is not None else set()
    declared = declared_scenes(datasets) if datasets.is_dir() else set()
    return check_scene_names(used, with_images, declared)


@dataclass(frozen=True)
class ProjectCheck:
    params: Params
    missing: tuple[str, ...]  # keys dvc.yaml reads that params.yaml lacks
    scenes: SceneNameCheck
    manifest_read: bool  # False: no manifest yet (run `dvc repro ingest`), images unknown

    @property
    def errors(self) -> list[str]:
        missing = [
            f"{k}: missing; dvc.yaml reads it and DVC has no defaults (copy it from the "
            "project's params.yaml)"
            for k in self.missing
        ]
        return missing + list(self.scenes.errors)


def check_project(root: Path, params_path: Path) -> ProjectCheck:
    """Validate ``params_path`` (raises :class:`pipeline.errors.ParamsError`) and check it
    against dvc.yaml's needs and the project's data."""
    params = load_params(params_path)
    data = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    manifest_path = root / Layout.of(params.paths).ingest.manifest
    manifest = pq.read_table(manifest_path) if manifest_path.is_file() else None
    scenes = scene_check(params, root / params.paths.datasets, manifest)
    return ProjectCheck(params, tuple(missing_keys(data)), scenes, manifest is not None)


def new_scene_note(root: Path, params: Params, scene: str) -> str:
    """For ``scenes set``: a warning when ``scene`` is new to the project (no ingested image,
    sidecar or rule has it), with the known scenes; "" when it is known. Not an error: setting
    a new scene is how a scene starts."""
    manifest_path = root / Layout.of(params.paths).ingest.manifest
    manifest = pq.read_table(manifest_path) if manifest_path.is_file() else None
    with_images = manifest_scenes(manifest) if manifest is not None else set()
    datasets = root / params.paths.datasets
    declared = declared_scenes(datasets) if datasets.is_dir() else set()
    check = check_scene_names({"scene": [scene]}, with_images, declared)
    if not check.errors:
        return ""
    known = check.errors[0].split("Known scenes: ", 1)[1]
    return (
        f"scene {scene!r} is new to this project (known: {known}); curate gives it "
        "curate.default_calibration / default_evaluation unless you add it to curate.*"
    )
