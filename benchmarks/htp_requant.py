"""The embedded simulation's requantization against the QNN HTP, per scene of a project.

For each scene of ``out/tensors/evaluation`` of a project whose ``dvc repro quantize`` has run:
float vs the HTP, float vs the embedded simulation with ``SimOptions.requant`` "reference" and
"htp" (``evaluate.simulation``; headline SQNR, the gate's verdict). HTP outputs are cached
under ``--cache``. Figures: docs/quantization.md §8.5. Usage::

    python -m benchmarks.htp_requant PROJECT [--workers N] [--cache DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.analysis.backend_compare import compared, evaluate_on_backend
from pipeline.backends.embedded import EmbeddedBackend
from pipeline.backends.htp_runner import HtpBackend, HtpConfig
from pipeline.backends.qnn_htp import input_shape
from pipeline.data.tensors import read_raw
from pipeline.graph.load import load_view
from pipeline.graph.runtime import Runner
from pipeline.params import load_params
from pipeline.quantization import encodings_json
from pipeline.quantization.simulate import SimOptions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=Path(".fieldcal"))
    a = ap.parse_args()
    demo = a.project
    params = load_params(demo / "params.yaml")
    tp, ep = params.tensors, params.evaluate
    view = load_view(demo / params.model.path)
    enc = encodings_json.for_model(
        encodings_json.read(demo / "out/quantize/encodings.json"),
        view,
        demo / "out/quantize/encodings.json",
    )
    rows = pq.read_table(demo / "out/tensors/evaluation/index.parquet").to_pylist()
    xs = [(r["scene"], r["path"], read_raw(demo / r["raw"], tp, view.input_layout)) for r in rows]
    what = compared(view, enc, layers=False)
    outs = list(view.outputs)
    htp = HtpBackend(
        HtpConfig(input_shape(tp.height, tp.width, view.input_layout), a.cache, a.workers)
    ).prepare(view, enc, outs)
    flt = Runner(view.model)
    res = {}
    for mode in ("reference", "htp"):
        sim = EmbeddedBackend().build_model(view, enc, outs, SimOptions(requant=mode))

        def reference(x, sim=sim):  # type: ignore[no-untyped-def]
            return flt.run(x, outs), sim.run(x)

        res[mode], _ = evaluate_on_backend(xs, reference, htp, what, ep, params.model.decoder)
    print(f"{len(xs)} images {tp.height}x{tp.width}, headline {ep.outputs}")
    print("| scene | float vs HTP | float vs embedded, reference | float vs embedded, requant htp "
          "| gate HTP / reference / htp |")  # fmt: skip
    for s in sorted(res["reference"]):
        h = res["reference"][s].backend
        r, q = res["reference"][s].embedded, res["htp"][s].embedded
        gates = " / ".join("pass" if v.passed else "fail" for v in (h, r, q))
        print(
            f"| {s} | {h.output_sqnr_db:.2f} dB, cos {h.output_cosine:.4f} "
            f"| {r.output_sqnr_db:.2f} dB ({r.output_sqnr_db - h.output_sqnr_db:+.2f}) "
            f"| {q.output_sqnr_db:.2f} dB ({q.output_sqnr_db - h.output_sqnr_db:+.2f}) | {gates} |"
        )


if __name__ == "__main__":
    main()
