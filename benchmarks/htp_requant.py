"""The embedded simulation's requantization against the QNN HTP, per scene of a project.

For each scene of ``out/tensors/evaluation`` of a project whose ``dvc repro quantize`` has run:
float vs the HTP, float vs the embedded simulation with ``SimOptions.requant`` "reference" and
"htp" (``evaluate.simulation``; headline SQNR, the gate's verdict), then HTP vs each simulation
on every model output (SQNR between them, shares of elements 0 / 1 / >1 steps apart), and the
simulation's time per image in each mode. With ``--layers``, the share of each kept tensor's
elements equal on both, by op type (median and minimum over the layers), chained and
teacher-forced (each layer fed the HTP's inputs). HTP outputs are cached under ``--cache``.
Figures: docs/quantization.md §8.5. Usage::

    python -m benchmarks.htp_requant PROJECT [--workers N] [--cache DIR] [--layers]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from statistics import median

import numpy as np
import pyarrow.parquet as pq
from numpy.typing import NDArray

from pipeline.analysis.artifacts import BackendScene, LayerAgreement
from pipeline.analysis.backend_compare import compared, evaluate_on_backend
from pipeline.backends.base import QuantizedModel
from pipeline.backends.embedded import EmbeddedBackend
from pipeline.backends.htp_runner import HtpBackend, HtpConfig
from pipeline.backends.qnn_htp import input_shape
from pipeline.data.tensors import read_raw
from pipeline.graph.load import load_view
from pipeline.graph.rewrite import FORCED_SUFFIX, teacher_forced
from pipeline.graph.runtime import Runner
from pipeline.graph.view import ModelView
from pipeline.params import load_params
from pipeline.quantization import encodings_json
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.simulate import SimOptions, build_quantized_model

MODES = ("reference", "htp")
Results = dict[str, tuple[dict[str, BackendScene], list[LayerAgreement]]]
Shares = dict[str, dict[str, list[float]]]  # mode -> op type -> share equal per layer


def measure(demo: Path, workers: int, cache: Path, layers: bool) -> Results:
    """Per simulation mode: each scene's comparison with the HTP, and the per-layer rows."""
    params = load_params(demo / "params.yaml")
    tp, ep = params.tensors, params.evaluate
    view = load_view(demo / params.model.path)
    enc_path = demo / "out/quantize/encodings.json"
    enc = encodings_json.for_model(encodings_json.read(enc_path), view, enc_path)
    rows = pq.read_table(demo / "out/tensors/evaluation/index.parquet").to_pylist()
    xs = [(r["scene"], r["path"], read_raw(demo / r["raw"], tp, view.input_layout)) for r in rows]
    what = compared(view, enc, layers=layers)
    outs = list(view.outputs)
    tensors = outs + [t for t in what.layers if t not in outs]
    shape = input_shape(tp.height, tp.width, view.input_layout)
    htp = HtpBackend(HtpConfig(shape, cache, workers)).prepare(view, enc, tensors)
    flt = Runner(view.model)
    res: Results = {}
    spent = dict.fromkeys(MODES, 0.0)
    for mode in MODES:
        sim = EmbeddedBackend().build_model(view, enc, tensors, SimOptions(requant=mode))

        def reference(x, sim=sim, mode=mode):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            got = sim.run(x)
            spent[mode] += time.perf_counter() - start
            return flt.run(x, outs), got

        res[mode] = evaluate_on_backend(xs, reference, htp, what, ep, params.model.decoder)
    print(f"{len(xs)} images {tp.height}x{tp.width}, headline {ep.outputs or outs}")
    per_image = ", ".join(f"{m} {spent[m] / len(xs):.3f} s" for m in MODES)
    print(f"embedded simulation per image ({len(tensors)} tensors out): {per_image}")
    if layers:
        forced = forced_shares(view, enc, [x for _, _, x in xs], htp, what.op_types)
        print_shares("teacher-forced (each layer fed the HTP's inputs)", forced)
    return res


def forced_shares(
    view: ModelView,
    enc: Encodings,
    xs: list[NDArray[np.float32]],
    htp: QuantizedModel,
    op_types: dict[str, str],
) -> Shares:
    """Per mode and op type, each kept tensor's share of elements equal to the HTP when its
    producer is fed the HTP's own inputs (``teacher_forced``)."""
    kept = list(op_types)
    equal = {m: dict.fromkeys(kept, 0) for m in MODES}
    total = 0
    sims = {m: teacher_forced(build_quantized_model(view, enc, SimOptions(requant=m)), kept)
            for m in MODES}  # fmt: skip
    runners = {m: Runner(model) for m, model in sims.items()}
    for x in xs:
        want = htp.run(x)
        feed = {view.input_name: x, **{t + FORCED_SUFFIX: want[t] for t in kept}}
        for m, r in runners.items():
            got = dict(zip(kept, r.session.run(kept, feed), strict=True))
            for t in kept:
                e = enc.activations[t]
                same = np.rint(got[t] / e.scale) == np.rint(want[t] / e.scale)
                equal[m][t] += int(np.count_nonzero(same))
        total += 1
    sizes = {t: want[t].size * total for t in kept}
    out: Shares = {m: {} for m in MODES}
    for m in MODES:
        for t in kept:
            out[m].setdefault(op_types[t], []).append(equal[m][t] / sizes[t])
    return out


def print_shares(title: str, shares: Shares) -> None:
    print(f"\n{title}")
    print("| op type | layers | equal to HTP, reference: median (min) | htp: median (min) |")
    for op in sorted(shares["htp"]):
        cells = [
            f"{100 * median(shares[m][op]):.4f} ({100 * min(shares[m][op]):.4f}) %" for m in MODES
        ]
        print(f"| {op} | {len(shares['htp'][op])} | {cells[0]} | {cells[1]} |")


def print_scenes(res: Results) -> None:
    print("| scene | float vs HTP | float vs embedded, reference | float vs embedded, htp "
          "| gate HTP / reference / htp |")  # fmt: skip
    ref, new = res["reference"][0], res["htp"][0]
    for s in sorted(ref):
        h, r, q = ref[s].backend, ref[s].embedded, new[s].embedded
        gates = " / ".join("pass" if v.passed else "fail" for v in (h, r, q))
        print(
            f"| {s} | {h.output_sqnr_db:.2f} dB, cos {h.output_cosine:.4f} "
            f"| {r.output_sqnr_db:.2f} dB ({r.output_sqnr_db - h.output_sqnr_db:+.2f}) "
            f"| {q.output_sqnr_db:.2f} dB ({q.output_sqnr_db - h.output_sqnr_db:+.2f}) | {gates} |"
        )
    print("\n| scene | output | HTP vs reference: SQNR, steps 0 / 1 / >1 | HTP vs htp: same |")
    for s in sorted(ref):
        for o, out in sorted(ref[s].outputs.items()):
            cells = []
            for a in (out.backend_vs_embedded, new[s].outputs[o].backend_vs_embedded):
                steps = " / ".join(f"{100 * x:.2f}" for x in (a.steps_0, a.steps_1, a.steps_more))
                cells.append(f"{a.sqnr_db:.2f} dB, {steps} %")
            print(f"| {s} | {o} | {cells[0]} | {cells[1]} |")


def print_layers(res: Results) -> None:
    shares: Shares = {m: {} for m in MODES}
    for mode in MODES:
        for row in res[mode][1]:
            shares[mode].setdefault(row.op_type, []).append(row.equal)
    print_shares("chained (each backend on its own outputs)", shares)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=Path(".fieldcal"))
    ap.add_argument("--layers", action="store_true", help="also compare every kept tensor")
    a = ap.parse_args()
    res = measure(a.project, a.workers, a.cache, a.layers)
    print_scenes(res)
    if a.layers:
        print_layers(res)


if __name__ == "__main__":
    main()
