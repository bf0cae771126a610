"""Calibration cost: fieldcal's statistics against onnxruntime's calibrators and the float floor.

    .venv/bin/python benchmarks/calibration.py            # N = 64 and 256, 640x480 images
    .venv/bin/python benchmarks/calibration.py --n 16 --n 32 --ort-percentile-max 32

Baseline ("floor"): plain float inference of the same images with onnxruntime, every session
option at its default (graph optimisations on, one thread per core), the model's own outputs
only; measured with onnxruntime's default thread spinning and with spinning stopped after each
run (``floor_session``), and the faster time and the smaller RSS of the two are the floor.
Every method runs in a fresh process over the same .raw tensors (derived from the demo
photographs: seeded crops resized to 640x480, fed one image per call); the table prints wall
time and peak RSS, and each as a ratio to the floor at the same N, measured in the same run.
Shared VMs drift by tens of percent within minutes, so the methods run in rounds (``--repeat``,
default 3: floor, tf, hist, ... then again) and each keeps its fastest round; peak RSS is the
largest over the rounds.

Methods:
* ``fieldcal tf``: min/max of every tensor (``tf``/``symmetric`` encodings);
* ``fieldcal hist``: min/max plus libpymo-style histograms (``enhanced``/``percentile``);
* ``ort MinMax`` / ``ort Percentile``: ``onnxruntime.quantization.calibrate.create_calibrator``.
  onnxruntime's Percentile keeps every activation in memory (14 GB past 64 images on this model),
  so it runs only up to ``--ort-percentile-max`` images.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from pipeline.params import TensorsParams

H, W = 480, 640
METHODS = (
    "floor",
    "floor, spinning stopped",
    "fieldcal tf",
    "fieldcal hist",
    "ort MinMax",
    "ort Percentile",
)


def make_raws(folder: Path, n: int, height: int = H, width: int = W) -> list[Path]:
    """``n`` seeded crops of the demo photographs, resized to width x height, as NCHW .raw."""
    from PIL import Image

    from pipeline.data.demo import PHOTOS, _package_dir
    from pipeline.data.tensors import preprocess, write_raw
    from pipeline.params import TensorsParams

    tp = TensorsParams(height=height, width=width, layout="NCHW", resize="stretch")
    rng = np.random.default_rng(0)
    sources = [_package_dir(p.package) / p.rel for p in PHOTOS]
    out = []
    for i in range(n):
        with Image.open(sources[i % len(sources)]) as src:
            im = src.convert("RGB")
            w, h = im.size
            cw, ch = int(w * rng.uniform(0.6, 1)), int(h * rng.uniform(0.6, 1))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            x = preprocess(im.crop((x0, y0, x0 + cw, y0 + ch)), tp)
        out.append(folder / f"{i:05d}.raw")
        write_raw(out[-1], x)
    return out


def model_path() -> Path:
    from pipeline.params import load_params

    path = ROOT / load_params(ROOT / "params.yaml").model.path
    if not path.is_file():
        raise SystemExit(f"{path} missing: run `fieldcal demo init` first")
    return path


FLOOR_SPINNING = ("default", "stopped")


def plain_session(model: Any, spinning: str = "default") -> Any:
    """An onnxruntime session with every default (all graph optimisations, one thread per
    core), as a user would open one; ``spinning="stopped"`` stops the pool threads spinning
    when a run returns (``session.force_spinning_stop``)."""
    import onnxruntime as ort

    quiet = ort.SessionOptions()
    quiet.log_severity_level = 3  # logging only
    if spinning == "stopped":
        quiet.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(
        model.SerializeToString(), sess_options=quiet, providers=["CPUExecutionProvider"]
    )


def floor_session(model: Any, spinning: str = "default") -> Callable[[np.ndarray], object]:
    """Plain inference of ``model`` as a user would run it: a :func:`plain_session`, the
    model's own outputs only. A lone session runs faster with onnxruntime's default spinning,
    two sessions run one after the other faster without it. Benchmarks time both and keep the
    faster as the floor."""
    sess = plain_session(model, spinning)
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})


class RawReader:
    """onnxruntime's ``CalibrationDataReader`` protocol (``get_next``, and iteration as
    ``qdq_loss_debug.collect_activations`` uses it) over .raw tensors, one image per feed."""

    def __init__(self, input_name: str, raws: Sequence[Path], tp: TensorsParams) -> None:
        self.input_name, self.tp = input_name, tp
        self.it = iter(raws)

    def get_next(self) -> dict[str, np.ndarray] | None:
        from pipeline.data.tensors import read_raw

        p = next(self.it, None)
        return None if p is None else {self.input_name: read_raw(p, self.tp)}

    def __iter__(self) -> RawReader:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        feed = self.get_next()
        if feed is None:
            raise StopIteration
        return feed


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB: the kernel's high-water mark of
    its own memory (``VmHWM``). Each measurement runs in a fresh process (:func:`in_child`), so
    this is that measurement's peak. Not ``getrusage``'s ``ru_maxrss``: Linux carries that over
    from the parent through fork and exec, so every child would report at least its parent's."""
    with open("/proc/self/status", encoding="ascii") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kib / 1024


def in_child(script: str, args: Sequence[str]) -> dict[str, float] | str:
    """Run ``script args`` in a fresh Python process and return the JSON object its last
    stdout line holds, or why it gave none ("killed (out of memory)", the tail of stderr)."""
    proc = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return "killed (out of memory)" if proc.returncode == -9 else proc.stderr[-300:]
    got: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return got


def run_one(method: str, raws: list[Path]) -> dict[str, float]:
    from pipeline.data.tensors import read_raw
    from pipeline.graph.load import load_view
    from pipeline.params import TensorsParams

    tp = TensorsParams(height=H, width=W, layout="NCHW")
    view = load_view(model_path())
    t0 = time.perf_counter()
    if method.startswith("floor"):
        run = floor_session(view.model, "stopped" if method.endswith("stopped") else "default")
        for p in raws:
            run(read_raw(p, tp))
    elif method.startswith("fieldcal"):
        from pipeline.calibration.collect import Calibrator
        from pipeline.params import QuantizeParams

        cal = Calibrator(view, tp, QuantizeParams())
        cal.collect_data(raws, histograms=method.endswith("hist"))
    else:
        from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

        with tempfile.TemporaryDirectory() as tmp:
            cal_method = (
                CalibrationMethod.MinMax if method == "ort MinMax" else CalibrationMethod.Percentile
            )
            cal = create_calibrator(
                model_path(), augmented_model_path=f"{tmp}/aug.onnx", calibrate_method=cal_method
            )
            cal.collect_data(RawReader(view.input_name, raws, tp))
            cal.compute_data()
    return {"wall_s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, action="append", help="image counts (default 64 and 256)")
    ap.add_argument("--ort-percentile-max", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; each method keeps its best")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--raws", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # child process: one measurement
        raws = sorted(args.raws.glob("*.raw"))[: args.n[0]]
        print(json.dumps(run_one(args.one, raws)))
        return
    counts = args.n or [64, 256]
    with tempfile.TemporaryDirectory(prefix="fieldcal-bench-") as tmp:
        raws_dir = Path(tmp)
        make_raws(raws_dir, max(counts))
        results: dict[tuple[str, int], dict[str, float]] = {}
        failed: dict[tuple[str, int], str] = {}
        for n in counts:
            for _ in range(args.repeat):
                for method in METHODS:
                    if method == "ort Percentile" and n > args.ort_percentile_max:
                        continue
                    if (method, n) in failed:
                        continue
                    got = in_child(__file__, ["--one", method, "--n", str(n), "--raws", tmp])
                    if isinstance(got, str):  # onnxruntime's Percentile is killed for memory
                        failed[(method, n)] = got
                        print(f"  {method} N={n}: {got}", file=sys.stderr)
                        continue
                    print(f"  measured {method} N={n}: {got}", file=sys.stderr)
                    best = results.setdefault((method, n), got)
                    best["wall_s"] = min(best["wall_s"], got["wall_s"])
                    best["peak_rss_mb"] = max(best["peak_rss_mb"], got["peak_rss_mb"])
    print(
        f"\nCalibration, CenterFace {W}x{H}, baseline = floor (plain float inference), same run, "
        f"best of {args.repeat} rounds\n"
    )
    print("| method | N | wall s | x floor | peak RSS MB | x floor |")
    print("|---|---:|---:|---:|---:|---:|")
    for n in counts:
        floors = [results[(m, n)] for m in METHODS[:2]]
        base = {k: min(f[k] for f in floors) for k in ("wall_s", "peak_rss_mb")}
        for method in METHODS:
            r = results.get((method, n))
            if r is None:
                if (method, n) in failed:
                    print(f"| {method} | {n} | {failed[(method, n)]} | | | |")
                continue
            print(
                f"| {method} | {n} | {r['wall_s']:.1f} | {r['wall_s'] / base['wall_s']:.2f} | "
                f"{r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / base['peak_rss_mb']:.2f} |"
            )
    if len(counts) > 1:
        lo, hi = min(counts), max(counts)
        for method in ("fieldcal tf", "fieldcal hist"):
            ratio = results[(method, hi)]["peak_rss_mb"] / results[(method, lo)]["peak_rss_mb"]
            print(f"\n{method}: peak RSS at N={hi} is {ratio:.2f}x that at N={lo}", end="")
        print()


if __name__ == "__main__":
    main()
