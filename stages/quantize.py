"""DVC stage `quantize`: float model + calibration tensors -> QNN encodings (AIMET JSON)."""

from pathlib import Path

import pyarrow.parquet as pq

from pipeline.atomic import write_bytes, write_json
from pipeline.backends import qnn_sdk as qnn
from pipeline.calibration.collect import Calibrator
from pipeline.calibration.encodings import quantizer_args
from pipeline.calibration.record import calibration_record
from pipeline.errors import PipelineError
from pipeline.graph.load import load_view
from pipeline.graph.view import check_input_spec
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.quantization import encodings_json, qdq
from pipeline.stage import run


def main(params: Params) -> None:
    qp, tp = params.quantize, params.tensors
    layout = Layout.of(params.paths)
    view = load_view(params.model.path, qp.fold_batchnorm)
    check_input_spec(view, tp.height, tp.width)
    cal_tensors = layout.tensors.calibration
    index = pq.read_table(cal_tensors.index)
    raws = [Path(r) for r in index.column("raw").to_pylist()]
    calibrator = Calibrator(view, tp, qp, params.paths.cache)
    with progress("calibrating", len(raws)) as advance:
        stats = calibrator.collect_data(raws, progress=advance)
    enc = calibrator.compute_data(stats)
    args = quantizer_args(qp, view.sha256, stats.minmax.count)
    out = layout.quantize
    write_json(out.encodings, encodings_json.to_1_0_0(enc, args))
    write_json(out.encodings_legacy, encodings_json.to_0_6_1(enc, args))
    write_json(out.calibration, calibration_record(view, stats))
    qdq_model = qdq.export_qdq(view, enc, qp.round_mode)  # the same encodings, no calibration
    write_bytes(out.qdq_model, qdq_model.SerializeToString())
    if qp.backend == "qnn":
        tool = qnn.find_tool(qnn.CONVERTER)
        if tool is None:
            raise PipelineError(
                f"quantize.backend is 'qnn' but {qnn.CONVERTER} is not on PATH; source the QNN "
                "SDK's bin/envsetup.sh first, or set quantize.backend: embedded"
            )
        cmd = qnn.converter_command(
            params.model.path, cal_tensors.input_list, out.qnn_model, qp, tool=tool
        )
        qnn.run(cmd)
    print(
        f"quantize: {len(enc.activations)} activation and "
        f"{len(enc.weights) + len(enc.biases)} param encodings from {stats.minmax.count} images "
        f"({stats.images_run} run, {stats.images_cached} cached)"
    )


if __name__ == "__main__":
    run(main)
