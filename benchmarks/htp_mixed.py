"""The remedies stage's mixed 8/16-bit remedies on the QNN HTP beside the embedded simulation.

For every remedy file of ``out/remedies/encodings/all`` with 16-bit activations in a project whose
``dvc repro remedies`` has run, on its scene's evaluation images (every scene for a remedy shared
by all): its QDQ export (:func:`export_qdq`, conversions at the 8/16-bit boundaries) on the HTP,
CPU fallback disabled. Prints, per remedy and scene, float vs embedded, float vs HTP and HTP vs
embedded SQNR of the headline output, the gate verdicts, the ops run at 16 bits, the QDQ model's
nodes and those outside the QNN EP, and seconds per image on the HTP. Usage::

    python -m benchmarks.htp_mixed PROJECT [--workers N] [--cache DIR] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.analysis.backend_compare import compared, evaluate_on_backend
from pipeline.backends.embedded import EmbeddedBackend
from pipeline.backends.htp_runner import HtpBackend, HtpConfig
from pipeline.backends.qnn_htp import SessionConfig, fallen_back, input_shape, make_static
from pipeline.data.tensors import read_raw
from pipeline.graph.load import load_view
from pipeline.graph.runtime import Runner
from pipeline.params import load_params
from pipeline.quantization import encodings_json
from pipeline.quantization.mixed import plan
from pipeline.quantization.qdq import export_qdq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--only", nargs="*", default=None, help="remedy file stems to run")
    a = ap.parse_args()
    params = load_params(a.project / "params.yaml")
    tp, ep, qp = params.tensors, params.evaluate, params.quantize
    view = load_view(a.project / params.model.path)
    rows = pq.read_table(a.project / "out/tensors/evaluation/index.parquet").to_pylist()
    scenes = sorted({r["scene"] for r in rows})
    shape = input_shape(tp.height, tp.width, view.input_layout)
    htp = HtpBackend(HtpConfig(shape, a.cache, a.workers, {}, qp.round_mode))
    flt = Runner(view.model)
    head = ep.outputs[0]
    print(f"{len(rows)} evaluation images {tp.height}x{tp.width}, headline output {head}")
    print(
        "| remedy | scene | 16-bit tensors | ops at 16 bits | nodes (outside QNN EP) "
        "| float vs embedded | float vs HTP | HTP vs embedded | gate emb / HTP | s/image |"
    )
    for path in sorted((a.project / "out/remedies/encodings/all").glob("*.json")):
        enc = encodings_json.for_model(encodings_json.read(path), view, path)
        raised = sum(e.bitwidth == 16 for e in enc.activations.values())
        if not raised or (a.only is not None and path.stem not in a.only):
            continue
        own, _, name = path.stem.rpartition(".")
        qdq = export_qdq(view, enc, qp.round_mode)
        outside = fallen_back(make_static(qdq, shape).SerializeToString(), SessionConfig())
        what = compared(view, enc, layers=False)
        model = htp.prepare(view, enc, list(what.outputs))
        sim = EmbeddedBackend(qp.round_mode).prepare(view, enc, list(what.outputs))

        def reference(x, sim=sim):  # type: ignore[no-untyped-def]
            return flt.run(x, list(what.outputs)), sim.run(x)  # noqa: B023

        for scene in [own] if own else scenes:
            xs = [
                (r["scene"], r["path"], read_raw(a.project / r["raw"], tp, view.input_layout))
                for r in rows
                if r["scene"] == scene
            ]
            t0 = time.perf_counter()
            found, _ = evaluate_on_backend(xs, reference, model, what, ep, params.model.decoder)
            per_image = (time.perf_counter() - t0) / len(xs)
            s = found[scene]
            e, h = s.embedded, s.backend
            vs = s.outputs[head].backend_vs_embedded.sqnr_db
            print(
                f"| {name} | {scene} | {raised} | {len(plan(view, enc).wide_ops)} "
                f"| {len(qdq.graph.node)} ({len(outside)}) | {e.output_sqnr_db:.2f} dB "
                f"| {h.output_sqnr_db:.2f} dB | {vs:.2f} dB "
                f"| {'pass' if e.passed else 'fail'} / {'pass' if h.passed else 'fail'} "
                f"| {per_image:.2f} |"
            )


if __name__ == "__main__":
    main()
