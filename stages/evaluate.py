"""DVC stage `evaluate`: float vs simulated quantized per layer and scene -> metrics, plots."""

import os
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.analysis import advice, backend_compare, evaluate
from pipeline.atomic import write_json
from pipeline.errors import GateError
from pipeline.graph import model
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.quantization import encodings_json
from pipeline.stage import run


def main(params: Params) -> None:
    paths, qp, ep, tp = params.paths, params.quantize, params.evaluate, params.tensors
    view = model.analyze(model.load(params.model.path), qp.fold_batchnorm)
    enc_path = paths.out / "quantize" / "encodings.json"
    enc = encodings_json.for_model(encodings_json.read(enc_path), view, enc_path)
    index = pq.read_table(paths.out / "tensors" / "evaluation" / "index.parquet").to_pylist()
    images = [evaluate.EvalImage(Path(r["raw"]), r["path"], r["scene"]) for r in index]
    with progress("evaluating", len(images)) as advance:
        opts = evaluate.EvalOptions(
            attribution=ep.attribution,
            layerwise=ep.layerwise,
            sensitivity_layers=ep.sensitivity_layers,
            decoder=params.model.decoder,
            detection_threshold=ep.detection_threshold,
            round_mode=qp.round_mode,
        )
        results = evaluate.run_evaluation(view, enc, images, tp, opts, advance)
    scenes, layer_rows, failures = evaluate.summarize(view, results, ep)
    out = paths.out / "evaluate"
    doc = evaluate.metrics_document(
        scenes, qp, ep, params.model.path, model.sha256_file(params.model.path)
    )
    if ep.backend == "qnn-htp":  # the same encodings on Qualcomm's HTP, beside the simulation
        run_ = backend_compare.HtpRun(
            paths.out / "quantize" / "model.qdq.onnx", paths.cache, os.cpu_count() or 1,
            qp.round_mode, params.model.decoder,
        )  # fmt: skip
        htp = backend_compare.evaluate_htp(view, enc, images, tp, ep, run_)
        doc["backends"] = {htp.backend: htp.to_json()}
    write_json(out / "metrics.json", doc)
    write_json(out / "layers.json", layer_rows)
    items = advice.advise(view, qp.weights.per_channel, qp.activations.mode, layer_rows)
    write_json(out / "advice.json", advice.to_json(items))
    evaluate.write_layer_csvs(out / "layers", layer_rows)
    evaluate.write_scene_csv(out / "scenes.csv", scenes)
    for f in failures:
        print(f"gate: {f.line()}")
    if failures and ep.fail_on_gate:
        raise GateError(f"{len(failures)} scene gate(s) failed (evaluate.fail_on_gate is on)")


if __name__ == "__main__":
    run(main)
