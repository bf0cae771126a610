"""DVC stage `evaluate`: float vs simulated quantized per layer and scene -> metrics, plots."""

import os
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.analysis import advice, artifacts, backend_compare, evaluate, summary, writers
from pipeline.analysis.runs import EvalImage, EvalOptions
from pipeline.errors import GateError
from pipeline.graph.load import load_view
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.quantization import encodings_json
from pipeline.stage import run


def main(params: Params) -> None:
    qp, ep, tp = params.quantize, params.evaluate, params.tensors
    layout = Layout.of(params.paths)
    view = load_view(params.model.path, qp.fold_batchnorm)
    enc_path = layout.quantize.encodings
    enc = encodings_json.for_model(encodings_json.read(enc_path), view, enc_path)
    index = pq.read_table(layout.tensors.evaluation.index).to_pylist()
    images = [EvalImage(Path(r["raw"]), r["path"], r["scene"]) for r in index]
    opts = EvalOptions(
        attribution=ep.attribution,
        layerwise=ep.layerwise,
        sensitivity_layers=ep.sensitivity_layers,
        decoder=params.model.decoder,
        detection_threshold=ep.detection_threshold,
        round_mode=qp.round_mode,
        requant=ep.simulation,
        sqnr_signal=ep.sqnr_signal,
    )
    with progress("evaluating", len(images)) as advance:
        results = evaluate.run_evaluation(view, enc, images, tp, opts, advance)
    scenes, layer_rows, failures = summary.summarize(view, results, ep)
    out = layout.evaluate
    doc = summary.metrics_document(scenes, qp, ep, params.model.path, view.sha256)
    if ep.backend == "qnn-htp":  # the same encodings on Qualcomm's HTP, beside the simulation
        htp_run = backend_compare.HtpRun(
            layout.quantize.qdq_model,
            params.paths.cache,
            os.cpu_count() or 1,
            qp.round_mode,
            params.model.decoder,
            requant=ep.simulation,
        )
        htp = backend_compare.evaluate_htp(view, enc, images, tp, ep, htp_run)
        doc = doc.model_copy(update={"backends": {htp.backend: htp}})
    artifacts.write(out.metrics, doc)
    artifacts.write(out.layers, layer_rows)
    items = advice.advise(view, qp.weights.per_channel, qp.activations.mode, layer_rows)
    artifacts.write(out.advice, advice.to_json(items))
    writers.write_layer_csvs(out.layer_csvs, layer_rows)
    writers.write_scene_csv(out.scenes_csv, scenes)
    for f in failures:
        print(f"gate: {f.line()}")
    if failures and ep.fail_on_gate:
        raise GateError(f"{len(failures)} scene gate(s) failed (evaluate.fail_on_gate is on)")


if __name__ == "__main__":
    run(main)
