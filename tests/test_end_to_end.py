"""Real `dvc repro` of the whole pipeline in a temporary git repository, on the demo."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import onnx
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from pipeline.data.ingest import MANIFEST_SCHEMA
from pipeline.graph.view import analyze
from tests.projects import BIN, STAGES, env, make_project, repro, run

pytestmark = pytest.mark.slow
_env, _run, _repro = env, run, repro


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The demo project after its first `dvc repro`, and the stages that ran. Built once;
    tests read it or work on their own copy (``project``), never change it."""
    project = make_project(tmp_path_factory.mktemp("project"))
    ran, _ = _repro(project)
    return project, ran


@pytest.fixture
def project(built: tuple[Path, list[str]], tmp_path: Path) -> Path:
    """A private copy of the built project (git, DVC cache, outputs, fieldcal's cache), so no
    test depends on what another test did to it."""
    dst = tmp_path / "project"
    shutil.copytree(built[0], dst, symlinks=True)
    return dst


def test_first_repro_runs_every_stage_and_outputs_validate(built):
    project, ran = built
    assert sorted(ran) == sorted(STAGES) and ran[:2] == ["doctor", "ingest"] and ran[-1] == "report"
    p = yaml.safe_load((project / "params.yaml").read_text())

    manifest = pq.read_table(project / "out/ingest/manifest.parquet")
    assert manifest.schema.equals(MANIFEST_SCHEMA)
    assert set(manifest.column("status").to_pylist()) == {"ok"}

    raw_bytes = p["tensors"]["height"] * p["tensors"]["width"] * 3 * 4
    for role in ("calibration", "evaluation"):
        lines = (project / f"out/tensors/{role}/input_list.txt").read_text().splitlines()
        assert lines
        for line in lines:
            assert (project / line).stat().st_size == raw_bytes

    enc = json.loads((project / "out/quantize/encodings.json").read_text())
    assert enc["version"] == "1.0.0"
    acts = {e["name"] for e in enc["activation_encodings"]}
    params_ = {e["name"] for e in enc["param_encodings"]}
    model = onnx.load(str(project / "models/centerface.onnx"))
    view = analyze(model)
    assert acts == set(view.kept_tensors)  # as QNN: none for a tensor fused away
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            assert view.fused_into[node.output[0]] in acts  # its own, or its Conv+BN+ReLU's
            assert node.input[1] in params_
    assert all(
        all(math.isfinite(s) and s > 0 for s in e["scale"]) for e in enc["activation_encodings"]
    )

    metrics = json.loads((project / "out/evaluate/metrics.json").read_text())
    assert set(metrics["scenes"]) == {"day", "night", "backlight"}
    for m in metrics["scenes"].values():
        assert math.isfinite(m["output_sqnr_db"]) and -1 <= m["output_cosine"] <= 1
        assert m["worst_layer"] and math.isfinite(m["worst_layer_own_sqnr_db"])
        assert 0 <= m["faces"]["miss_rate"] <= 1 and len(m["sensitivity"]) == 1
    remedies = json.loads((project / "out/remedies/remedies.json").read_text())
    assert set(remedies) == {"day", "night", "backlight"}
    for scene, v in remedies.items():
        names = [r["remedy"] for r in v["remedies"]]
        assert names[:2] == ["generic", "union"] and names[-1] == "a16_all"
        if v["chosen"] is not None:  # the chosen remedy passes and its encodings are written
            chosen = next(r for r in v["remedies"] if r["remedy"] == v["chosen"])
            assert chosen["passes_gate"]
            assert (project / f"out/remedies/encodings/{scene}.json").is_file()
    for v in remedies.values():  # the searched sets: a record per tensor, the anchors
        if v["search"]["chosen"]:
            assert {r["tensor"] for r in v["search"]["removals"]} >= set(v["search"]["chosen"])
        assert len(v["search"]["anchors"]) == 2
    # one encodings file for the car when a configuration passes every scene, and its QDQ model
    ship = project / "out/remedies/encodings/ship.json"
    assert ship.is_file() == (project / "out/remedies/qdq/ship.qdq.onnx").is_file()
    advice = json.loads((project / "out/evaluate/advice.json").read_text())
    assert {a["kind"] for a in advice} >= {"channels_not_multiple_of_32"}
    html = (project / "out/report/report.html").read_text()
    assert "<svg" in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )

    shown = _run([str(BIN / "dvc"), "metrics", "show"], project).stdout
    header = shown.splitlines()[0].split()
    assert header == ["Path", "cosine", "passes_gate", "sqnr_db"]  # one table, numbers only
    assert max(len(line) for line in shown.splitlines()) <= 80  # a bare show fits a terminal
    for row in ("night.json", "day.json", "night.ship.json", "ship.json"):
        assert f"out/report/metrics/{row}" in shown
    remedies = _run([str(BIN / "dvc"), "metrics", "show", "out/report/remedies"], project).stdout
    assert remedies.splitlines()[0].split() == header  # every remedy, the same shape
    assert "out/report/remedies/night.union.json" in remedies
    curation = _run(
        [str(BIN / "dvc"), "metrics", "show", "out/curate/summary.json"], project
    ).stdout
    assert "out/curate/summary.json" in curation and "calibration" in curation


def test_second_repro_does_nothing(project):
    ran, out = _repro(project)
    assert ran == ["doctor"], out  # the entry check runs every time; it changed nothing


def test_new_capture_and_corrupt_file(project):
    session = next((project / "datasets/vehicle").iterdir())
    rows_before = pq.read_table(project / "out/ingest/manifest.parquet").num_rows
    with Image.open(project / "datasets/generic/astronaut.png") as im:
        buf = io.BytesIO()
        im.convert("RGB").resize((320, 320)).save(buf, "JPEG", quality=85)
    (session / "new_0001.jpg").write_bytes(buf.getvalue())
    (session / "broken_0002.jpg").write_bytes(buf.getvalue()[:1500])
    ran, out = _repro(project)
    assert ran[:2] == ["doctor", "ingest"]
    manifest = {
        r["path"]: r for r in pq.read_table(project / "out/ingest/manifest.parquet").to_pylist()
    }
    assert len(manifest) == rows_before + 2
    broken = manifest[f"vehicle/{session.name}/broken_0002.jpg"]
    assert broken["status"] == "quarantined" and "cannot decode" in broken["reason"]
    assert manifest[f"vehicle/{session.name}/new_0001.jpg"]["status"] == "ok"
    # only the two new files were decoded; the rest came from the content-addressed cache
    assert f"ingest: {rows_before + 2} files, 2 decoded, {rows_before} from cache" in out
    if "quantize" in ran:  # statistics of unchanged calibration images come from the cache
        m = re.search(r"\((\d+) run, (\d+) cached\)", out)
        assert m is not None and int(m.group(1)) <= 1


def test_gate_fails_the_run_with_one_line_per_scene(project):
    params_path = project / "params.yaml"
    original = params_path.read_text()
    p = yaml.safe_load(original)
    p["evaluate"]["gates"] = {"night": {"cosine_min": 0.99999999}}
    p["evaluate"]["fail_on_gate"] = True
    params_path.write_text(yaml.safe_dump(p, sort_keys=False))
    try:
        proc = subprocess.run(
            [str(BIN / "dvc"), "repro"],
            cwd=project,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode != 0
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("gate: scene 'night'")]
        assert len(lines) == 1 and "output cosine" in lines[0] and "0.99999999" in lines[0]
        assert "worst layer" in lines[0]
        assert "Traceback" not in proc.stdout + proc.stderr
        gate = subprocess.run(
            [str(BIN / "fieldcal"), "gate", "--root", str(project)],
            env=_env(),
            capture_output=True,
            text=True,
        )
        assert gate.returncode == 3  # ran, and found a scene under its gate (README: exit codes)
        assert "FAIL scene 'night': output cosine" in gate.stdout
    finally:
        params_path.write_text(original)
    # back to the original params: DVC restores the earlier evaluation from its run-cache
    _, out = _repro(project)
    assert "'evaluate'" in out


def test_captures_coverage_says_yes_where_new_data_clips(project):
    import numpy as np

    src_same = project / "incoming_same"
    src_clip = project / "incoming_clip"
    src_same.mkdir()
    src_clip.mkdir()
    curated = pq.read_table(project / "out/curate/curated.parquet").to_pylist()
    calib = [r["path"] for r in curated if r["role"] == "calibration"][:4]
    for i, rel in enumerate(calib):  # calibration pictures, re-encoded: inside the encodings
        Image.open(project / "datasets" / rel).convert("RGB").save(src_same / f"{i}.png")
    rng = np.random.default_rng(7)
    for i in range(4):  # saturated, high-contrast noise: far outside what calibration saw
        a = (rng.integers(0, 2, (240, 320, 3)) * 255).astype(np.uint8)
        Image.fromarray(a).save(src_clip / f"{i}.png")
    for src, name in ((src_same, "s_same"), (src_clip, "s_clip")):
        run(
            [
                str(BIN / "fieldcal"),
                "captures",
                "add",
                str(src),
                "--session",
                name,
                "--scene",
                "night",
                "--root",
                str(project),
            ],
            project,
        )
    assert (project / "datasets/vehicle/s_clip.dvc").is_file()  # tracked by DVC
    run([str(BIN / "dvc"), "repro", "ingest"], project)  # ingest only: no re-quantization yet
    same = run([str(BIN / "fieldcal"), "coverage", "s_same", "--root", str(project)], project)
    clip = run([str(BIN / "fieldcal"), "coverage", "s_clip", "--root", str(project)], project)
    assert "requantize no" in same.stdout, same.stdout
    assert "requantize yes" in clip.stdout and "clips" in clip.stdout, clip.stdout
    assert "(4 images measured, 0 from the cache)" in same.stdout, same.stdout
    again = run([str(BIN / "fieldcal"), "coverage", "s_same", "--root", str(project)], project)
    assert "(0 images measured, 4 from the cache)" in again.stdout, again.stdout
    assert again.stdout.splitlines()[:-1] == same.stdout.splitlines()[:-1]  # same verdict


def test_remote_round_trip_then_repro_does_nothing(project, tmp_path):
    """Push to a local-directory remote, clone elsewhere, pull: nothing left to reproduce."""
    remote = tmp_path / "remote"
    dvc = str(BIN / "dvc")
    run([dvc, "remote", "add", "-d", "local", str(remote)], project)
    run([dvc, "push", "-q"], project)
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"], project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run([dvc, "pull", "-q"], clone)
    assert (clone / "models/centerface.onnx").is_file()
    assert (clone / "out/evaluate/metrics.json").is_file()
    ran, out = repro(clone)
    assert ran == ["doctor"], out


def test_hand_curation_goes_through_dvc(project):
    """`fieldcal curate` (no --dry-run) leaves dvc.lock in step: `dvc status` stays clean."""
    params_path = project / "params.yaml"
    p = yaml.safe_load(params_path.read_text())
    p["curate"]["calibration"]["day"] = 3
    params_path.write_text(yaml.safe_dump(p, sort_keys=False))
    res = run([str(BIN / "fieldcal"), "curate", "--root", str(project)], project)
    assert "Running stage 'curate'" in res.stdout and "calibration," in res.stdout
    curated = pq.read_table(project / "out/curate/curated.parquet").to_pylist()
    assert sum(r["role"] == "calibration" and r["scene"] == "day" for r in curated) == 3
    status = run([str(BIN / "dvc"), "status", "curate"], project).stdout
    assert "modified" not in status and "changed" not in status.replace("always changed", ""), (
        status
    )
