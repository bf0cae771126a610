"""fieldcal's encodings against libpymo, the C++ core of Qualcomm's AIMET, on the same tensors.

Not part of the test suite: AIMET needs torch, so it lives in its own environment (see
parity/README.md). This script runs in fieldcal's environment; it

1. runs the demo model over the calibration tensors listed in an ``input_list.txt`` and dumps
   every activation tensor, image by image, as float32 ``.npy`` (plus every Conv weight);
2. runs ``libpymo_side.py`` under the AIMET interpreter, which feeds the same arrays in the same
   order to ``BlockTensorQuantizer.updateStats`` and writes the encodings it computes;
3. computes fieldcal's encodings with its production path (``Calibrator.collect_data``: ranges
   reduced inside onnxruntime, histograms by the compiled kernels) over the same images, and
   prints the agreement table.

Activations are the tensors QNN keeps (``ModelView.kept_tensors``), the ones fieldcal encodes.

    python parity/aimet_parity.py --aimet-python /path/to/aimet-venv/bin/python \\
        --input-list out/tensors/calibration/input_list.txt --images 16

Agreement: same offset and scale within 1e-6 relative ("equal"); for enhanced, also how many
differ by at most one histogram bin in min and max.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.calibration.collect import Calibrator  # noqa: E402
from pipeline.data.tensors import parse_input_list, read_raw  # noqa: E402
from pipeline.graph.load import load_view  # noqa: E402
from pipeline.graph.rewrite import with_outputs  # noqa: E402
from pipeline.graph.runtime import Runner  # noqa: E402
from pipeline.params import load_params  # noqa: E402
from pipeline.quantization.encoding import Encoding, symmetric_encoding, tf_encoding  # noqa: E402
from pipeline.quantization.histogram import enhanced_encoding, percentile_encoding  # noqa: E402

# libpymo's minimum range in aimet-onnx 2.42: the step is at least FLT_EPS (docs §2.2),
# fieldcal's quantize.min_range: eps_scale; not QNN's 0.01.
LIBPYMO_MIN_RANGE = None
# libpymo in aimet-onnx 2.42 takes scale = max(max/127, -min/128) (measured), as aimet_torch v2
# does (docs §3.2); §3.1's absmax/127 is the older libpymo and fieldcal's default.
RULE = "max_of_both"


def dump(workdir: Path, input_list: Path, images: int) -> tuple[list[str], list[str]]:
    params = load_params(ROOT / "params.yaml")
    view = load_view(ROOT / params.model.path)
    runner = Runner(with_outputs(view.model, view.kept_tensors))
    lines = parse_input_list(input_list.read_text())[:images]
    for i, line in enumerate(lines):
        x = read_raw(ROOT / line[0][1], params.tensors, view.input_layout)
        out = runner.run(x, view.kept_tensors)
        for t, name in enumerate(view.kept_tensors):
            np.save(workdir / f"act_{t:04d}_{i:04d}.npy", out[name][0])
    for w, op in enumerate(view.weighted):
        # per-channel axis first: (C_out, ...) for both Conv (axis 0) and ConvTranspose (axis 1)
        np.save(
            workdir / f"w_{w:04d}.npy", np.ascontiguousarray(np.moveaxis(op.weight, op.axis, 0))
        )
    meta = {
        "activations": view.kept_tensors,
        "weights": [op.weight_name for op in view.weighted],
        "images": len(lines),
        "raws": [str(ROOT / line[0][1]) for line in lines],
    }
    (workdir / "meta.json").write_text(json.dumps(meta))
    return view.kept_tensors, [op.weight_name for op in view.weighted]


def ours(workdir: Path, meta: dict) -> dict[str, dict[str, list[list[float]]]]:
    res: dict[str, dict[str, list[list[float]]]] = {}

    def put(kind: str, name: str, encs: list[Encoding]) -> None:
        res.setdefault(kind, {})[name] = [[e.min, e.max, e.scale, e.offset] for e in encs]

    params = load_params(ROOT / "params.yaml")
    view = load_view(ROOT / params.model.path)
    raws = [Path(r) for r in meta["raws"]]
    calibrator = Calibrator(view, params.tensors, params.quantize)
    ranges = calibrator.collect_data(raws, histograms=False)
    hists = calibrator.collect_data(raws, histograms=True)
    assert hists.pdfs is not None
    for name in meta["activations"]:
        lo, hi = ranges.minmax.range_of(name)
        pdf = hists.pdfs[name]
        put("tf", name, [tf_encoding(lo, hi, 8, LIBPYMO_MIN_RANGE)])
        put("symmetric", name, [symmetric_encoding(lo, hi, 8, LIBPYMO_MIN_RANGE, rule=RULE)])
        put("enhanced", name, [enhanced_encoding(pdf)])
        put("percentile", name, [percentile_encoding(pdf, 99.99, 8, 0.01)])
    for w, name in enumerate(meta["weights"]):
        arr = np.load(workdir / f"w_{w:04d}.npy")
        put("w_tf", name, [tf_encoding(float(arr.min()), float(arr.max()), 8, LIBPYMO_MIN_RANGE)])
        put(
            "w_symmetric_pc",
            name,
            [
                symmetric_encoding(float(c.min()), float(c.max()), 8, LIBPYMO_MIN_RANGE, rule=RULE)
                for c in arr.reshape(arr.shape[0], -1)
            ],
        )
    return res


def compare(a: dict, b: dict) -> list[tuple[str, int, int, int]]:
    rows = []
    for kind in sorted(a):
        equal = within_bin = total = 0
        for name, encs in a[kind].items():
            theirs = b[kind][name]
            for (mn, mx, s, o), (mn2, mx2, s2, o2) in zip(encs, theirs, strict=True):
                total += 1
                if o == o2 and abs(s - s2) <= 1e-6 * abs(s2):
                    equal += 1
                    within_bin += 1
                elif abs(mn - mn2) <= s2 * 1.0001 and abs(mx - mx2) <= s2 * 1.0001:
                    within_bin += 1
        rows.append((kind, total, equal, within_bin))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--aimet-python", required=True, type=Path)
    ap.add_argument(
        "--input-list", type=Path, default=ROOT / "out/tensors/calibration/input_list.txt"
    )
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--keep", type=Path, help="keep the dumped tensors here")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fieldcal-parity-"))
    try:
        dump(workdir, args.input_list, args.images)
        meta = json.loads((workdir / "meta.json").read_text())
        subprocess.run(
            [
                str(args.aimet_python),
                str(Path(__file__).with_name("libpymo_side.py")),
                str(workdir),
            ],
            check=True,
        )
        theirs = json.loads((workdir / "libpymo.json").read_text())
        mine = ours(workdir, meta)
        (workdir / "fieldcal.json").write_text(json.dumps(mine))
        print(
            f"{meta['images']} images, {len(meta['activations'])} activation tensors, "
            f"{len(meta['weights'])} weights\n"
        )
        print("| encodings | compared | equal (offset, scale 1e-6) | within one step |")
        print("|---|---:|---:|---:|")
        for kind, total, equal, near in compare(mine, theirs):
            print(
                f"| {kind} | {total} | {equal} ({100 * equal / total:.1f} %) | "
                f"{near} ({100 * near / total:.1f} %) |"
            )
    finally:
        if args.keep:
            shutil.copytree(workdir, args.keep, dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
