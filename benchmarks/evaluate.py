"""Evaluation cost against one float plus one quantized pass over the same images, in one run.

    .venv/bin/python benchmarks/evaluate.py               # 32 images of 640x480
    .venv/bin/python benchmarks/evaluate.py --n 16 --height 256 --width 320

Baseline ("floor"): one float pass plus one simulated-quantized pass (the same fake-quant model
``evaluate`` builds) over the same ``.raw`` tensors, each a plain onnxruntime session with
every option at its default (``benchmarks.calibration.floor_session``: graph optimisations on,
pool threads spinning) and the model's own outputs only. Both sides start from scratch in each
round: the floor builds the simulated model and creates its sessions inside its timing, as
``run_evaluation`` builds and creates its own. Against it,
``pipeline.evaluate.run_evaluation`` as the evaluate stage runs it, every kept tensor compared,
in four configurations:

* ``oneshot``: the full quantized model only;
* ``+ attribution``: weights-only and activations-only runs added;
* ``+ layerwise``: every layer also fed float inputs (the default stage configuration);
* ``+ sensitivity 3``: the enable-one / disable-one sweep for the 3 worst layers (outside the
  target: its cost grows with the number of layers swept, which ``evaluate.sensitivity_layers``
  bounds).

Encodings come from ``tf`` calibration over the same images. Target (issue 4): the default
configuration without the sweep at most 3x the floor. Shared VMs drift by tens of percent
within minutes, so everything runs in rounds (``--repeat``, default 3) and keeps its fastest.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.calibration import floor_session, make_raws, model_path  # noqa: E402

CONFIGS = {
    "oneshot": {"attribution": False, "layerwise": False, "sensitivity_layers": 0},
    "+ attribution": {"attribution": True, "layerwise": False, "sensitivity_layers": 0},
    "+ layerwise (stage default)": {
        "attribution": True,
        "layerwise": True,
        "sensitivity_layers": 0,
    },
    "+ sensitivity 3": {"attribution": True, "layerwise": True, "sensitivity_layers": 3},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=32, help="evaluation images")
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; each keeps its best")
    ap.add_argument(
        "--warm-floor",
        action="store_true",
        help="build the floor's sessions and run them once before timing it (evaluation is "
        "still timed from scratch): the floor without its start-up cost",
    )
    args = ap.parse_args()

    from pipeline import evaluate, model
    from pipeline.params import QuantizeParams, TensorsParams
    from pipeline.quantize import calibrate
    from pipeline.quantize.simulate import SimOptions, build_quantized_model
    from pipeline.tensors import read_raw

    tp = TensorsParams(height=args.height, width=args.width, layout="NCHW")
    view = model.analyze(model.load(model_path()))
    with tempfile.TemporaryDirectory(prefix="fieldcal-bench-") as tmp:
        raws = make_raws(Path(tmp), args.n, args.height, args.width)
        stats = calibrate.collect(view, raws, tp, "bench", None, histograms=False)
        enc = calibrate.compute_encodings(view, stats, QuantizeParams())
        images = [evaluate.EvalImage(p, p.name, "bench") for p in raws]

        best: dict[str, float] = {}
        for _ in range(args.repeat):
            t0 = time.perf_counter()  # from scratch, as run_evaluation: build, sessions, runs
            float_run = floor_session(view.model)
            quant_run = floor_session(build_quantized_model(view, enc, SimOptions()))
            if args.warm_floor:
                for run in (float_run, quant_run):
                    run(read_raw(raws[0], tp))
                t0 = time.perf_counter()
            for p in raws:
                x = read_raw(p, tp)
                float_run(x)
                quant_run(x)
            wall = time.perf_counter() - t0
            best["floor"] = min(best.get("floor", wall), wall)
            print(f"  floor: {wall:.2f} s", file=sys.stderr)
            for name, cfg in CONFIGS.items():
                opts = evaluate.EvalOptions(decoder="centerface", **cfg)  # type: ignore[arg-type]
                t0 = time.perf_counter()
                evaluate.run_evaluation(view, enc, images, tp, opts)
                wall = time.perf_counter() - t0
                best[name] = min(best.get(name, wall), wall)
                print(f"  {name}: {wall:.2f} s", file=sys.stderr)
        floor = best["floor"]
        rows = [(name, best[name]) for name in CONFIGS]

    print(
        f"\nEvaluation, CenterFace {args.width}x{args.height}, {args.n} images; baseline = one "
        f"float + one quantized pass ({'warm' if args.warm_floor else 'from scratch'}), same "
        f"run, best of {args.repeat} rounds\n"
    )
    print("| configuration | wall s | x floor |")
    print("|---|---:|---:|")
    print(f"| floor (float + quantized pass) | {floor:.2f} | 1.00 |")
    for name, wall in rows:
        print(f"| {name} | {wall:.2f} | {wall / floor:.2f} |")


if __name__ == "__main__":
    main()
