"""Why more 16-bit tensors can score lower: measured on a project's outputs (README, "Why more
16-bit tensors can score lower").

Run from a project root after `dvc repro` (e.g. the demo's):
``python -m benchmarks.superset --scene night`` prints, for the scene's evaluation images and
the headline output, with the union encodings:

* output SQNR of the 8-bit model, of the K worst tensors (own error) at 16 bits and of the M
  worst (K < M, the ``remedies.mixed16`` ladder);
* each of the M worst alone at 16 bits: how many lower the output SQNR;
* where the error sits: how many output elements hold 90 % of the error energy;
* the cosine between the error that raising tensors K+1..M removes and the error left: negative
  means the removed error pointed against the rest, so removing it exposes more.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipeline.analysis import artifacts
from pipeline.analysis.precision import raise16
from pipeline.analysis.summary import headline_outputs
from pipeline.backends.embedded import EmbeddedBackend
from pipeline.calibration.collect import Calibrator
from pipeline.data.tensors import read_raw
from pipeline.graph.load import load_view
from pipeline.graph.rewrite import with_outputs
from pipeline.graph.runtime import Runner
from pipeline.layout import Layout
from pipeline.params import load_params
from pipeline.quantization import encodings_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scene", default="night")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--m", type=int, default=16)
    a = ap.parse_args()
    params = load_params(Path("params.yaml"))
    qp, tp, lay = params.quantize, params.tensors, Layout.of(params.paths)
    view = load_view(params.model.path, qp.fold_batchnorm)
    union = encodings_json.for_model(
        encodings_json.read(lay.quantize.encodings), view, lay.quantize.encodings
    )
    cal = [Path(r) for r in pq.read_table(lay.tensors.calibration.index).column("raw").to_pylist()]
    ranges = Calibrator(view, tp, qp, params.paths.cache).collect_data(cal, False).minmax
    index = pq.read_table(lay.tensors.evaluation.index).to_pylist()
    xs = [read_raw(Path(r["raw"]), tp, view.input_layout) for r in index if r["scene"] == a.scene]
    out = headline_outputs(view, params.evaluate)[0]
    rows = artifacts.worst_rows(artifacts.read_layers(lay.evaluate.layers)[a.scene])
    worst = [r.layer for r in rows]
    ref = np.concatenate(
        [Runner(with_outputs(view.model, [out])).run(x, [out])[out].ravel() for x in xs]
    ).astype(np.float64)
    backend = EmbeddedBackend()

    def error(tensors: list[str]) -> np.ndarray:
        model = backend.prepare(view, raise16(view, qp, union, ranges, tensors), [out])
        got = np.concatenate([model.run(x)[out].ravel() for x in xs]).astype(np.float64)
        return got - ref

    def sqnr(e: np.ndarray) -> float:
        return float(10 * np.log10(np.sum(ref**2) / np.sum(e**2)))

    e0, ek, em = error([]), error(worst[: a.k]), error(worst[: a.m])
    print(f"{a.scene}, output {out}, {len(xs)} images, {ref.size} elements")
    print(f"8-bit {sqnr(e0):.2f} dB; {a.k} worst at 16 bits {sqnr(ek):.2f} dB; ", end="")
    print(f"{a.m} worst {sqnr(em):.2f} dB")
    lower = [t for t in worst[: a.m] if sqnr(error([t])) < sqnr(e0)]
    print(f"alone at 16 bits, {len(lower)} of the {a.m} worst lower the output SQNR: {lower}")
    energy = np.sort(em**2)[::-1]
    n90 = int(np.searchsorted(np.cumsum(energy), 0.9 * energy.sum()) + 1)
    print(f"90 % of the error energy ({a.m} at 16 bits) sits on {n90} of {ref.size} elements")
    removed = ek - em  # what raising tensors k+1..m took away
    cos = float(removed @ em / (np.linalg.norm(removed) * np.linalg.norm(em)))
    print(f"cosine(error removed by tensors {a.k + 1}-{a.m}, error left) = {cos:.2f}")


if __name__ == "__main__":
    main()
