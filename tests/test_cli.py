"""Every fieldcal command: --help with an example, a user mistake, a success, documented exit
codes (0 nothing to act on, 1 user mistake, 2 usage, 3 something to act on)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
import yaml
from PIL import Image
from typer.testing import CliRunner

from pipeline.atomic import write_parquet
from pipeline.cli import app
from pipeline.data.ingest import ingest
from pipeline.params import IngestParams

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = [
    ["demo", "init"],
    ["demo", "run"],
    ["params", "check"],
    ["encodings", "diff"],
    ["captures", "add"],
    ["scenes"],
    ["scenes", "set"],
    ["gate"],
    ["doctor"],
    ["coverage"],
    ["curate"],
]


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def _jpeg(seed: int) -> bytes:
    a = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _metrics(night_passes: bool) -> dict[str, Any]:
    def scene(cos: float, passed: bool) -> dict[str, Any]:
        return {
            "images": 4,
            "output_cosine": cos,
            "output_sqnr_db": 20.0,
            "outputs": {"537": {"cosine": cos, "sqnr_db": 20.0}},
            "worst_layer": "410",
            "worst_layer_sqnr_db": 9.0,
            "worst_layer_clip_rate": 0.0,
            "worst_layer_dominant": "activations",
            "gate": {"passed": passed, "cosine_min": 0.99},
        }

    night = scene(0.995 if night_passes else 0.97, night_passes)
    run = {
        "model": "models/m.onnx",
        "model_sha256": "ab" * 32,
        "backend": "embedded",
        "activations": "tf 8-bit",
        "weights": "symmetric 8-bit per-channel",
        "bias_bitwidth": 32,
        "sqnr_signal": "golden",
        "simulation": "htp",
    }
    scenes = {"night": night, "day": scene(0.999, True)}
    return {"run": run, "passed": night_passes, "scenes": scenes}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """params.yaml, a few images (one broken), the ingest manifest and evaluate metrics."""
    ds = tmp_path / "datasets"
    (ds / "generic").mkdir(parents=True)
    (ds / "vehicle" / "s1").mkdir(parents=True)
    for i in range(3):
        (ds / "generic" / f"g{i}.jpg").write_bytes(_jpeg(i))
        (ds / "vehicle" / "s1" / f"v{i}.jpg").write_bytes(_jpeg(10 + i))
    (tmp_path / "params.yaml").write_text("paths: {datasets: datasets, out: out}\n")
    write_parquet(
        tmp_path / "out" / "ingest" / "manifest.parquet",
        ingest(ds, IngestParams(workers=1)).table,
    )
    _write_metrics(tmp_path, night_passes=True)
    return tmp_path


def _write_metrics(root: Path, night_passes: bool) -> None:
    path = root / "out" / "evaluate" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_metrics(night_passes)))


def _encodings(path: Path, bw: int, scale: float) -> Path:
    item = {"bw": bw, "dtype": "INT", "enc_type": "PER_TENSOR", "is_sym": False}
    acts = [item | {"name": "368", "offset": [0], "scale": [scale]}]
    path.write_text(json.dumps({"version": "1.0.0", "activation_encodings": acts}))
    return path


def _command(path: list[str]) -> Any:
    cmd: Any = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example_and_every_option_help_text(path: list[str]) -> None:
    res = run(*path, "--help")
    assert res.exit_code == 0, res.output
    assert "Example:" in res.output and "$ fieldcal " in res.output
    for p in _command(path).params:
        if p.name == "help":
            continue
        assert getattr(p, "help", None), f"{' '.join(path)}: {p.name} has no help text"


def test_version_and_the_exit_codes_are_in_the_top_level_help() -> None:
    res = run("--version")
    assert res.exit_code == 0 and res.output.startswith("fieldcal ")
    top = run("--help").output
    assert "Exit codes: 0 nothing to act on; 1 a user mistake" in " ".join(top.split())


@pytest.mark.parametrize(
    "args",
    [
        ["gate", "--params", "{tmp}"],  # a directory
        ["params", "check", "--params", "{tmp}/binary.onnx"],  # a binary file
        ["params", "check", "--params", "{tmp}/missing.yaml"],
        ["doctor", "--root", "{tmp}/nowhere"],
        ["scenes", "--root", "{tmp}"],
        ["curate", "--dry-run", "--root", "{tmp}"],
        ["coverage", "s1", "--root", "{tmp}"],
        ["scenes", "set", "vehicle/*", "Night Time", "--root", "{tmp}"],
        ["captures", "add", "{tmp}", "--session", "s2", "--root", "{tmp}/nowhere"],
        ["encodings", "diff", "{tmp}/binary.onnx", "{tmp}/binary.onnx"],
        ["demo", "init", "--params", "{tmp}/binary.onnx"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_user_mistakes_end_in_one_message_never_a_traceback(
    tmp_path: Path, args: list[str]
) -> None:
    (tmp_path / "binary.onnx").write_bytes(bytes(range(256)) * 4)
    res = run(*[a.format(tmp=tmp_path) for a in args])
    assert res.exit_code in (1, 2), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    if res.exit_code == 1:
        assert "fieldcal: " in res.output


def test_gate_exits_3_when_a_scene_fails(project: Path) -> None:
    ok = run("gate", "--root", project)
    assert ok.exit_code == 0 and "gate: all 2 scenes pass" in ok.output
    _write_metrics(project, night_passes=False)
    res = run("gate", "--root", project)
    assert res.exit_code == 3
    assert "FAIL scene 'night': output cosine 0.97 fails its gate 0.99" in res.output


@pytest.mark.parametrize("text", ["{not json", '{"scenes": {"day": {"images": 4}}}', "[]"])
def test_gate_on_a_metrics_file_it_cannot_read_says_to_rerun(project: Path, text: str) -> None:
    (project / "out" / "evaluate" / "metrics.json").write_text(text)
    res = run("gate", "--root", project)
    assert res.exit_code == 1 and "run `dvc repro` to write it again" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_doctor_lists_and_exits_3_only_with_check(project: Path) -> None:
    assert run("doctor", "--root", project).exit_code == 0
    assert run("doctor", "--check", "--root", project).exit_code == 0  # nothing unused
    (project / "datasets" / "vehicle" / "s1" / "bad.jpg").write_bytes(_jpeg(99)[:200])
    write_parquet(
        project / "out" / "ingest" / "manifest.parquet",
        ingest(project / "datasets", IngestParams(workers=1)).table,
    )
    listed = run("doctor", "--root", project)
    assert listed.exit_code == 0 and "1 file(s) not used" in listed.output
    assert run("doctor", "--check", "--root", project).exit_code == 3


def test_params_check_names_what_a_partial_params_yaml_lacks(project: Path) -> None:
    res = run("params", "check", "--root", project)  # the fixture's params.yaml has paths only
    assert res.exit_code == 1 and "curate: missing; dvc.yaml reads it" in res.output


def test_params_check_scenes_and_curate_succeed(project: Path) -> None:
    full = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    full["paths"] |= {"datasets": "datasets", "out": "out"}
    (project / "params.yaml").write_text(yaml.safe_dump(full, sort_keys=False))
    res = run("params", "check", "--root", project)
    assert res.exit_code == 0 and json.loads(res.stdout)["paths"]["out"] == "out"
    res = run("scenes", "--root", project)
    assert res.exit_code == 0 and "s1" in res.output
    res = run("curate", "--dry-run", "--root", project)
    assert res.exit_code == 0 and "calibration" in res.output
    assert not (project / "out" / "curate").exists()


def test_scenes_set_matching_nothing_is_an_error(project: Path) -> None:
    res = run("scenes", "set", "vehicle/s9/*", "night", "--root", project)
    assert res.exit_code == 1 and "matches 'vehicle/s9/*'" in res.output
    res = run("scenes", "set", "vehicle/s1/v0.jpg", "night", "--root", project)
    assert res.exit_code == 0 and "1 image(s) set to scene 'night'" in res.output


def test_captures_add_copying_nothing_is_an_error(project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "card_empty"
    (empty / "DCIM").mkdir(parents=True)
    (empty / "notes.txt").write_text("x")
    res = run("captures", "add", empty, "--session", "s2", "--no-track", "--root", project)
    assert res.exit_code == 1 and "copied nothing" in res.output
    card = tmp_path / "card"
    card.mkdir()
    (card / "new.jpg").write_bytes(_jpeg(42))
    res = run("captures", "add", card, "--session", "s3", "--no-track", "--root", project)
    assert res.exit_code == 0 and "1 added" in res.output


def test_encodings_diff_shows_the_bit_width(tmp_path: Path) -> None:
    a = _encodings(tmp_path / "a.json", 8, 0.1)
    b = _encodings(tmp_path / "b.json", 16, 0.1 / 257)
    res = run("encodings", "diff", a, b)
    assert res.exit_code == 0, res.output
    header, row = res.output.splitlines()[1:3]
    assert "bits" in header and row.split()[:3] == ["368", "activation", "8->16"]


def test_coverage_without_a_model_says_so(project: Path) -> None:
    res = run("coverage", "s1", "--root", project)
    assert res.exit_code == 1 and "models/centerface.onnx not found" in res.output


def test_compile_by_hand_never_writes_into_dvc_outputs(project: Path) -> None:
    qdq = project / "out" / "remedies" / "qdq" / "ship.qdq.onnx"  # the default: what ships
    qdq.parent.mkdir(parents=True, exist_ok=True)
    qdq.write_bytes(b"not compiled: the folder check comes first")
    res = run("compile", "--soc", "60", "--out", "out/compile", "--root", project)
    assert res.exit_code == 1
    assert "which DVC writes; compile by hand into another folder" in res.output
    assert not (project / "out" / "compile").exists()


def test_compile_by_hand_without_a_shipped_model_says_what_to_do(project: Path) -> None:
    res = run("compile", "--soc", "60", "--root", project)  # default: what ships
    assert res.exit_code == 1
    assert "ship.qdq.onnx not found: run `dvc repro` first, or name another QDQ model" in (
        res.output
    )
    assert not (project / "compiled").exists()
