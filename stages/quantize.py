"""DVC stage `quantize`: float model + calibration tensors -> QNN encodings (AIMET JSON)."""

from pathlib import Path

import pyarrow.parquet as pq

from pipeline.atomic import write_bytes, write_json
from pipeline.backends import qnn_sdk as qnn
from pipeline.calibration import calibrate
from pipeline.errors import PipelineError
from pipeline.graph import model
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.quantization import encodings_json, qdq
from pipeline.stage import run


def main(params: Params) -> None:
    paths, qp, tp = params.paths, params.quantize, params.tensors
    view = model.analyze(model.load(params.model.path), qp.fold_batchnorm)
    model.check_input_spec(view, tp.height, tp.width)
    model_sha = model.sha256_file(params.model.path)
    index = pq.read_table(paths.out / "tensors" / "calibration" / "index.parquet")
    raws = [Path(r) for r in index.column("raw").to_pylist()]
    histograms = qp.activations.mode in calibrate.HISTOGRAM_MODES
    with progress("calibrating", len(raws)) as advance:
        stats = calibrate.collect(
            view, raws, tp, model_sha, paths.cache, histograms, qp.batch_size, advance
        )
    enc = calibrate.compute_encodings(view, stats, qp)
    args = calibrate.quantizer_args(qp, model_sha, stats.minmax.count)
    out = paths.out / "quantize"
    write_json(out / "encodings.json", encodings_json.to_1_0_0(enc, args))
    write_json(out / "encodings_0.6.1.json", encodings_json.to_0_6_1(enc, args))
    write_json(out / "calibration.json", calibrate.calibration_record(view, stats, model_sha))
    qdq_model = qdq.export_qdq(view, enc, qp.round_mode)  # the same encodings, no calibration
    write_bytes(out / "model.qdq.onnx", qdq_model.SerializeToString())
    if qp.backend == "qnn":
        tool = qnn.find_tool(qnn.CONVERTER)
        if tool is None:
            raise PipelineError(
                f"quantize.backend is 'qnn' but {qnn.CONVERTER} is not on PATH; source the QNN "
                "SDK's bin/envsetup.sh first, or set quantize.backend: embedded"
            )
        lst = paths.out / "tensors" / "calibration" / "input_list.txt"
        qnn.run(
            qnn.converter_command(params.model.path, lst, out / "qnn" / "model.cpp", qp, tool=tool)
        )
    print(
        f"quantize: {len(enc.activations)} activation and "
        f"{len(enc.weights) + len(enc.biases)} param encodings from {stats.minmax.count} images "
        f"({stats.images_run} run, {stats.images_cached} cached)"
    )


if __name__ == "__main__":
    run(main)
