"""Incremental cost: the whole pipeline over n field images, then again after k more arrive.

    .venv/bin/python benchmarks/incremental.py                # n = 2000, k = 20
    .venv/bin/python benchmarks/incremental.py --n 400 --k 20

Baseline: the first run of each stage on a fresh project (a copy of this one in a temporary git
repository, default params, the demo model and generic photographs, plus n field images:
640x480 JPEGs, seeded crops of the demo photographs, darkened for night, in sessions of 200
with scenes day / night / backlight), as one ``dvc repro``, timed per stage from the moment
DVC announces it to the next stage's announcement (output unbuffered); DVC's own start-up and
graph check before the first stage is its own row. Then k images arrive as a new session and
``dvc repro`` runs again. The table prints each stage's re-run time as a ratio to its first
run, and what the stage reported (files decoded, model runs, images measured). A stage whose
dependencies did not change is skipped by DVC and costs only DVC's check.

Stages whose work is bounded by the curation quotas (tensors, quantize, evaluate, remedies,
stability) re-run in full only when the new images enter the calibration or evaluation picks,
which changes the encodings; then their cost is that of the quotas, not of n.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.projects import BIN, STAGES, env, make_project  # noqa: E402

SCENES = ("day", "night", "backlight")
PER_SESSION = 200
REPORTED = re.compile(
    r"^(ingest: .*|quantize: .*|coverage: \d+ images measured.*|tensors: .*)$", re.M
)


def add_images(datasets: Path, start: int, count: int, session: str | None = None) -> None:
    """Images ``start .. start+count-1``; sessions of 200 unless ``session`` is given."""
    from PIL import Image

    from pipeline.data.demo import PHOTOS, _package_dir

    sources = [_package_dir(p.package) / p.rel for p in PHOTOS]
    rng = np.random.default_rng(start)
    for i in range(start, start + count):
        name = session or f"bench_{i // PER_SESSION:03d}"
        folder = datasets / "vehicle" / name
        if not folder.is_dir():
            folder.mkdir(parents=True)
            scene = SCENES[(i // PER_SESSION) % len(SCENES)] if session is None else "night"
            (folder / "sidecar.json").write_text(json.dumps({"scene": scene, "synthetic": True}))
        scene = json.loads((folder / "sidecar.json").read_text())["scene"]
        with Image.open(sources[i % len(sources)]) as src:
            im = src.convert("RGB")
            w, h = im.size
            cw, ch = int(w * rng.uniform(0.5, 1)), int(h * rng.uniform(0.5, 1))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            im = im.crop((x0, y0, x0 + cw, y0 + ch)).resize((640, 480))
            if scene == "night":
                im = im.point(lambda v: int(v * 0.25))
            im.save(folder / f"{i:05d}.jpg", quality=90)


STAGE_LINE = re.compile(r"^(?:Running stage '(\w+)'|Stage '(\w+)' didn't change)")


def repro_stages(project: Path) -> dict[str, tuple[float, str]]:
    """One ``dvc repro``: {stage (and "dvc start-up"): (seconds, what it reported)}."""
    proc = subprocess.Popen(
        [str(BIN / "dvc"), "repro"],
        cwd=project,
        env=dict(env(), PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    t0 = time.perf_counter()
    marks: list[tuple[str, float]] = [("dvc start-up", t0)]
    said: dict[str, list[str]] = {}
    for line in proc.stdout:
        m = STAGE_LINE.match(line)
        if m:
            stage = m.group(1) or m.group(2)
            marks.append((stage, time.perf_counter()))
            said[stage] = [] if m.group(1) else ["skipped (deps unchanged)"]
        elif REPORTED.match(line.strip()) and len(marks) > 1:
            said[marks[-1][0]].append(line.strip())
    if proc.wait() != 0:
        raise SystemExit(f"dvc repro failed in {project}")
    end = time.perf_counter()
    out = {}
    for (name, start), (_, stop) in zip(marks, [*marks[1:], ("end", end)], strict=True):
        out[name] = (stop - start, "; ".join(said.get(name, [])))
        print(f"  {name}: {stop - start:.1f} s  {out[name][1]}", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--k", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fieldcal-incr-") as tmp:
        project = Path(tmp)
        make_project(project, reduced=False, track=False)
        add_images(project / "datasets", 0, args.n)
        print(f"first run, {args.n} field images:", file=sys.stderr)
        first = repro_stages(project)
        add_images(project / "datasets", args.n, args.k, session="new_arrivals")
        print(f"after adding {args.k}:", file=sys.stderr)
        again = repro_stages(project)
        nothing = subprocess.run(
            [str(BIN / "dvc"), "status", "-q"], cwd=project, env=env(), check=False
        ).returncode
    print(
        f"\nIncremental cost, n = {args.n} field images + {args.k} new; baseline = each "
        "stage's first run, same project, same run\n"
    )
    print("| stage | first run s | re-run s | ratio | re-run reported |")
    print("|---|---:|---:|---:|---|")
    for stage in ["dvc start-up", *STAGES]:
        (a, _), (b, said) = first[stage], again[stage]
        print(f"| {stage} | {a:.1f} | {b:.1f} | {b / a:.2f} | {said} |")
    ta, tb = sum(v[0] for v in first.values()), sum(v[0] for v in again.values())
    print(f"| **total** | {ta:.1f} | {tb:.1f} | {tb / ta:.2f} | |")
    print(f"\ndvc status after the re-run: {'clean' if nothing == 0 else 'changes'}")


if __name__ == "__main__":
    main()
