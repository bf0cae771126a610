"""The demo's face-miss figures rest on real faces: at least 30 in its evaluation images.

The faces are counted as the evaluate stage counts them: CenterFace, float model, the demo's
tensors and ``evaluate.detection_threshold``, on the images that curation picked for evaluation
with the demo's own params (no reduced quotas). Real `dvc repro` up to curate.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.analysis.detect import decode_centerface
from pipeline.data.demo import PHOTOS
from pipeline.data.tensors import preprocess
from pipeline.graph.load import load
from pipeline.graph.runtime import Runner
from pipeline.params import load_params
from tests.projects import BIN, make_project, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo project with its own params, data laid down (not tracked), nothing run."""
    return make_project(tmp_path_factory.mktemp("demo"), reduced=False, track=False)


def test_demo_evaluation_images_hold_at_least_30_real_faces(demo: Path) -> None:
    project = demo
    run([str(BIN / "dvc"), "repro", "curate"], project)
    p = load_params(project / "params.yaml")
    tp = p.tensors.model_copy(update={"layout": "NCHW"})  # the model's own layout
    runner = Runner(load(project / p.model.path))
    picks = pq.read_table(project / "out/curate/curated.parquet").to_pylist()
    faces: Counter[str] = Counter()
    for pick in (r for r in picks if r["role"] == "evaluation"):
        with Image.open(project / p.paths.datasets / pick["path"]) as img:
            out = runner.run(preprocess(img, tp))
        boxes = decode_centerface({k: v[0] for k, v in out.items()}, p.evaluate.detection_threshold)
        faces[pick["scene"]] += len(boxes)
    assert sum(faces.values()) >= 30, dict(faces)
    assert faces["night"] > 0 and faces["backlight"] > 0, dict(faces)  # the field scenes


def test_demo_sidecars_record_licence_and_synthetic(demo: Path) -> None:
    project = demo
    generic = json.loads((project / "datasets/generic/sidecar.json").read_text())["images"]
    assert set(generic) == {Path(ph.rel).name for ph in PHOTOS}
    assert all(m["licence"] and m["synthetic"] is False for m in generic.values())
    assert "insightface" in generic["t1.jpg"]["source"]
    derived = 0
    for sidecar in (project / "datasets/vehicle").glob("*/sidecar.json"):
        for m in json.loads(sidecar.read_text())["images"].values():
            assert m["synthetic"] is True and m["licence"]
            derived += "generic/t1.jpg" in m["source"]
    assert derived >= 16  # three field frames in four show t1.jpg's six faces
