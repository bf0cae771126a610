"""Temporary copies of this project for end-to-end tests (real git, real dvc)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGES = [
    "doctor",
    "ingest",
    "curate",
    "tensors",
    "quantize",
    "evaluate",
    "coverage",
    "remedies",
    "compile",
    "stability",
    "report",
]


def env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def repro(cwd: Path) -> tuple[list[str], str]:
    out = run([str(BIN / "dvc"), "repro"], cwd).stdout
    return re.findall(r"Running stage '(\w+)'", out), out


def make_project(dst: Path, reduced: bool = True, track: bool = True) -> Path:
    """Copy of the project with the demo data laid down and git initialised; ``reduced``:
    small demo params (fewer images, small tensors) for tests; ``track``: data under DVC."""
    for name in ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"):
        shutil.copy2(ROOT / name, dst / name)
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    (dst / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy2(ROOT / ".dvc" / name, dst / ".dvc" / name)
    if reduced:
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["curate"]["calibration"] = {"day": 4, "night": 3, "backlight": 2}
        params["curate"]["evaluation"] = {"day": 2, "night": 1, "backlight": 1}
        params["tensors"]["height"], params["tensors"]["width"] = 128, 160
        params["evaluate"]["sensitivity_layers"] = 1
        params["remedies"]["mixed16"] = [4]
        (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], dst)
    tracking = "--track" if track else "--no-track"
    run([str(BIN / "fieldcal"), "demo", "init", tracking, "--root", str(dst)], dst)
    return dst


def output_hashes(project: Path) -> dict[str, str]:
    """sha256 of every file under out/ (temporary files and folders of interrupted writes,
    whose names start with a dot, excluded)."""
    out = {}
    root = project / "out"
    for p in sorted(root.rglob("*")):
        hidden = any(part.startswith(".") for part in p.relative_to(root).parts)
        if p.is_file() and not hidden:
            out[p.relative_to(project).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def lock_outs(project: Path) -> dict[str, str]:
    """{output path: md5} from dvc.lock."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for st in lock["stages"].values() for o in st.get("outs", [])}
