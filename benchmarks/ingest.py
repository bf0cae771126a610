"""Ingest throughput against the floor of a plain full decode of the same files, in one run.

    .venv/bin/python benchmarks/ingest.py                 # 400 JPEGs of 1920x1080, +20 new
    .venv/bin/python benchmarks/ingest.py --n 2000 --add 20

Baseline ("floor"): open + full decode + RGB conversion of every file with Pillow, one process,
nothing else. fieldcal's ingest does more per file (sha256 over the bytes, luminance statistics,
scene tagging, manifest row) but decodes JPEGs at reduced size (Pillow draft mode) and uses
every core. Then ``--add`` new files are added and ingest runs again on the warm cache: only they
are decoded. Ratios are images per second over the floor's.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_jpegs(folder: Path, n: int, start: int = 0) -> list[Path]:
    from pipeline.data.demo import PHOTOS, _package_dir

    sources = [Image.open(_package_dir(p.package) / p.rel).convert("RGB") for p in PHOTOS[:8]]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        rng = np.random.default_rng(i)
        im = sources[i % len(sources)].resize((1920, 1080), Image.Resampling.BILINEAR)
        a = np.asarray(im, np.int16) + rng.integers(-8, 9, (1080, 1920, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=88)
        out.append(folder / f"{i:05d}.jpg")
        out[-1].write_bytes(buf.getvalue())
    return out


def floor(files: list[Path]) -> float:
    t0 = time.perf_counter()
    for f in files:
        with Image.open(f) as im:
            im.convert("RGB").load()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--add", type=int, default=20)
    args = ap.parse_args()
    from pipeline.data.ingest import ingest
    from pipeline.params import IngestParams

    with tempfile.TemporaryDirectory(prefix="fieldcal-ingest-") as tmp:
        root = Path(tmp) / "datasets"
        session = root / "vehicle" / "bench"
        files = make_jpegs(session, args.n)
        base = floor(files)
        cache = Path(tmp) / "cache"
        p = IngestParams()
        t0 = time.perf_counter()
        first = ingest(root, p, cache)
        cold = time.perf_counter() - t0
        make_jpegs(session, args.add, start=args.n)
        t0 = time.perf_counter()
        again = ingest(root, p, cache)
        warm = time.perf_counter() - t0
        p1 = IngestParams(workers=1)
        t0 = time.perf_counter()
        ingest(root, p1, None)
        single = time.perf_counter() - t0
    n, total = args.n, args.n + args.add
    print(
        f"\nIngest, {n} JPEGs 1920x1080 (+{args.add}), {os.cpu_count()} cores; "
        "baseline = floor (plain full decode, 1 process), same run\n"
    )
    print("| run | files | decoded | seconds | images/s | x floor (images/s) |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [
        ("floor: full decode", n, n, base),
        ("fieldcal ingest, cold cache, all cores", n, first.decoded, cold),
        ("fieldcal ingest, no cache, 1 process", total, total, single),
        (f"fieldcal ingest after adding {args.add}", total, again.decoded, warm),
    ]
    for label, files_n, dec, secs in rows:
        rate = files_n / secs
        print(
            f"| {label} | {files_n} | {dec} | {secs:.2f} | {rate:.1f} | {rate / (n / base):.2f} |"
        )
    print(f"\nre-run after adding {args.add} to {n}: {warm / cold:.1%} of the first run's time")


if __name__ == "__main__":
    main()
