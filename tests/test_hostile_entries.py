"""The daily loop on a DVC-tracked session holding entries DVC cannot hash: real `dvc repro`.

Without the `doctor` stage, DVC 3.67 hangs on a FIFO and fails on a broken link, a link loop, a
socket or a non-UTF-8 name before any stage runs (README "Entries DVC cannot hash"). Here every
kind sits in one tracked session at once, and a plain `dvc repro` (the daily loop) must complete,
with each entry moved to the quarantine and recorded; `fieldcal doctor --restore` gives them
back. (DVC runs the `doctor` stage first only when it plans the whole pipeline: see README.)
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.data import doctor
from tests.hostile import hostile_entries
from tests.projects import BIN, env, make_project, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("hostile"))


def test_repro_quarantines_every_hostile_entry_then_restore(project, tmp_path):
    session = next(p for p in (project / "datasets/vehicle").iterdir() if p.is_dir())
    rel = session.relative_to(project / "datasets").as_posix()
    (tmp_path / "outside").mkdir()
    kinds = hostile_entries(tmp_path / "scratch", tmp_path / "outside")
    for name in os.listdir(os.fsencode(tmp_path / "scratch/vehicle/s1")):
        if name not in (b"ok.png", b"inside_link.png"):
            os.rename(
                os.fsencode(tmp_path / "scratch/vehicle/s1") + b"/" + name,
                os.fsencode(session) + b"/" + name,
            )
    expected = {k.replace("vehicle/s1", rel): v for k, v in kinds.items()}
    proc = subprocess.run(
        [str(BIN / "dvc"), "repro"],
        cwd=project,
        env=env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    moved = [ln for ln in proc.stdout.splitlines() if ln.startswith("doctor: ")]
    assert len(moved) == len(expected) and all("--restore" in ln for ln in moved)
    record = json.loads((project / "out/doctor/quarantine.json").read_text())
    assert {e["path"]: e["kind"] for e in record["quarantined"]} == expected
    manifest = pq.read_table(project / "out/ingest/manifest.parquet").to_pylist()
    assert {r["status"] for r in manifest} == {"ok"}  # nothing hostile reached ingest
    assert not any("secret" in r["path"] for r in manifest)
    status = run(
        [str(BIN / "dvc"), "status", session.relative_to(project).as_posix() + ".dvc"], project
    )
    assert "up to date" in status.stdout  # the session's .dvc was re-committed without them
    res = run([str(BIN / "fieldcal"), "doctor", "--restore", "--root", str(project)], project)
    assert res.stdout.count("restored") == len(expected)
    assert {f.path for f in doctor.scan(project / "datasets")} == set(expected)
