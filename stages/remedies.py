"""DVC stage `remedies`: per scene, which remedy passes its gate, at what cost; chosen encodings."""

from pathlib import Path

import pyarrow.parquet as pq

from pipeline.analysis import artifacts, remedies
from pipeline.analysis.evaluate import OneshotScorer
from pipeline.analysis.runs import EvalImage
from pipeline.atomic import write_json
from pipeline.calibration.collect import Calibrator
from pipeline.graph.load import load_view
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.quantization import encodings_json
from pipeline.stage import run


def main(params: Params) -> None:
    qp, layout = params.quantize, Layout.of(params.paths)
    view = load_view(params.model.path, qp.fold_batchnorm)
    model_sha = view.sha256
    enc_path = layout.quantize.encodings
    union = encodings_json.for_model(encodings_json.read(enc_path), view, enc_path)
    cal = [
        remedies.CalImage(Path(r["raw"]), r["scene"], r["source"])
        for r in pq.read_table(layout.tensors.calibration.index).to_pylist()
    ]
    images = [
        EvalImage(Path(r["raw"]), r["path"], r["scene"])
        for r in pq.read_table(layout.tensors.evaluation.index).to_pylist()
    ]
    calib = Calibrator(view, params.tensors, qp, params.paths.cache)
    scorer = OneshotScorer(
        view, params.tensors, params.evaluate, params.model.decoder, qp.round_mode
    )
    layer_rows = artifacts.read_layers(layout.evaluate.layers)
    inputs = remedies.Inputs(cal, images, union, layer_rows, params.remedies)
    found = remedies.run(calib, scorer, inputs)
    out = layout.remedies
    for scene, r in found.items():
        if r.chosen is not None:
            args = {
                "fieldcal": {
                    "remedy": r.chosen.name,
                    "scene": scene,
                    "cost": r.chosen.cost,
                    "model_sha256": model_sha,
                }
            }
            write_json(
                out.scene_encodings(scene), encodings_json.to_1_0_0(r.chosen.encodings, args)
            )
        print(f"remedies: {scene}: {r.verdict.why}")
    verdicts = {scene: r.verdict for scene, r in found.items()}
    # always present (a DVC output): which scene has chosen encodings in this folder
    write_json(out.chosen, {scene: v.chosen for scene, v in verdicts.items()})
    artifacts.write(out.remedies, verdicts)
    write_json(out.metrics, remedies.metrics(verdicts))


if __name__ == "__main__":
    run(main)
