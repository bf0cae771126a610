"""The scheduled recipe (.github/workflows/scheduled.yml) as written, against a local remote:
its steps run in order (pull, repro, metrics diff, gate, push) in a fresh clone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.projects import BIN, ROOT, make_project, repro, run

pytestmark = pytest.mark.slow


def test_scheduled_steps_run_in_order_against_a_local_remote(tmp_path):
    steps = yaml.safe_load((ROOT / ".github/workflows/scheduled.yml").read_text())["jobs"][
        "calibrate"
    ]["steps"]
    install = next(s for s in steps if s.get("name") == "Install")
    assert "remote-s3" in install["run"]  # the plugin for the remote the comment configures
    runs = [s for s in steps if "run" in s and s is not install]
    names = [s["name"].split()[0] for s in runs]
    assert names == ["Pull", "Reproduce", "Metrics", "Gate", "Push"]

    (tmp_path / "project").mkdir()
    project = make_project(tmp_path / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["default_gate"] = {"cosine_min": 0.5}  # a bar the reduced demo clears
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repro(project)
    dvc = str(BIN / "dvc")
    run([dvc, "remote", "add", "-d", "local", str(tmp_path / "remote")], project)
    run([dvc, "push", "-q"], project)
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "fleet"], project)
    clone = tmp_path / "ci"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    os.symlink(BIN.parent, clone / ".venv")  # what the Install step makes
    summary = tmp_path / "summary.md"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["GITHUB_STEP_SUMMARY"] = str(summary)
    for step in runs:
        proc = subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, (step["name"], proc.stdout, proc.stderr)
        if step["name"].startswith("Reproduce"):
            assert "Running stage 'ingest'" not in proc.stdout  # pulled: nothing to redo
        if step["name"].startswith("Gate"):
            assert "gate: all" in proc.stdout
    assert summary.is_file()
    assert Path(clone / "out/evaluate/metrics.json").is_file()
