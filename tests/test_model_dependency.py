"""The model is a DVC dependency wherever params put it (`${model.path}` in dvc.yaml): changing
the path or the file re-runs exactly the stages that read the model, and what depends on them."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest
import yaml

from tests.projects import BIN, make_project, repro

pytestmark = pytest.mark.slow

# stages whose deps include ${model.path}, then what reads their outputs (report); ingest and
# curate never read the model
READERS = {
    "tensors",
    "quantize",
    "compile",
    "evaluate",
    "coverage",
    "remedies",
    "stability",
    "report",
}


def _reproduce(project: Path) -> set[str]:
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return {s.addressing for s in repo.reproduce()}


def _save_variant(src: Path, dst: Path, note: str) -> None:
    """The same network with another doc string: new bytes, same behaviour."""
    m = onnx.load(str(src))
    m.doc_string = note
    onnx.save(m, str(dst))


def test_model_path_and_file_changes_rerun_the_model_readers(tmp_path, monkeypatch):
    (tmp_path / "p").mkdir()
    project = make_project(tmp_path / "p")
    repro(project)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(project)
    assert _reproduce(project) == {"doctor"}

    _save_variant(project / "models/centerface.onnx", project / "models/other.onnx", "v1")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["model"]["path"] = "models/other.onnx"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _reproduce(project) == {"doctor"} | READERS

    _save_variant(project / "models/centerface.onnx", project / "models/other.onnx", "v2")
    assert _reproduce(project) == {"doctor"} | READERS  # the case: was "up to date"
    assert _reproduce(project) == {"doctor"}
