"""SIGKILL at random moments never leaves a half-written output, and runs are reproducible."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.projects import BIN, STAGES, env, lock_outs, make_project, output_hashes, repro

pytestmark = pytest.mark.slow
TRIALS = 24


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    project = make_project(tmp_path_factory.mktemp("crash"))
    ran, _ = repro(project)
    assert sorted(ran) == sorted(STAGES)
    return project, output_hashes(project)


def _kill_after(cmd: list[str], cwd: Path, delay: float) -> int | None:
    """Start ``cmd`` in its own process group, SIGKILL the group after ``delay`` s."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        return proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def test_random_kills_leave_outputs_intact_or_absent_and_repro_recovers(reference):
    project, ref = reference
    rng = np.random.default_rng(2026)
    killed = 0
    for trial in range(TRIALS):
        if trial % 6 == 5:  # now and then kill dvc itself, with the stage it runs
            cmd = [str(BIN / "dvc"), "repro", "--force"]
        else:
            cmd = [str(BIN / "python"), "-m", f"stages.{STAGES[int(rng.integers(len(STAGES)))]}"]
        killed += _kill_after(cmd, project, float(rng.uniform(0.1, 1.6))) is None
        now = output_hashes(project)
        broken = {p for p, h in now.items() if p in ref and h != ref[p]}
        unknown = set(now) - set(ref)
        assert not broken, f"trial {trial}: half-written outputs {sorted(broken)[:5]}"
        assert not unknown, f"trial {trial}: stray files {sorted(unknown)[:5]}"
    assert killed >= TRIALS // 3  # many trials really interrupted something
    repro(project)
    assert output_hashes(project) == ref


def test_two_clean_runs_give_identical_hashes(reference, tmp_path):
    first, _ = reference
    second = make_project(tmp_path)
    repro(second)
    assert lock_outs(second) == lock_outs(first)
    assert output_hashes(second) == output_hashes(first)
