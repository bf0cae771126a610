"""DVC stage `remedies`: per scene, which remedy passes its gate, at what cost; every remedy's
encodings, the chosen ones and the one for the car, with QDQ models of those."""

from pathlib import Path

import pyarrow.parquet as pq

from pipeline.analysis import artifacts, htp_recheck, remedies, remedy_files
from pipeline.analysis.candidates import CalImage, FieldEvidence, Inputs
from pipeline.analysis.evaluate import OneshotScorer
from pipeline.analysis.runs import EvalImage
from pipeline.calibration.collect import Calibrator
from pipeline.graph.load import load_view
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.quantization import encodings_json
from pipeline.stage import run


def main(params: Params) -> None:
    qp, layout = params.quantize, Layout.of(params.paths)
    view = load_view(params.model.path, qp.fold_batchnorm)
    enc_path = layout.quantize.encodings
    union = encodings_json.for_model(encodings_json.read(enc_path), view, enc_path)
    cal = [
        CalImage(Path(r["raw"]), r["scene"], r["source"])
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
    field = FieldEvidence(
        artifacts.read_coverage(layout.coverage.coverage),
        artifacts.read_stability(layout.stability.stability),
        params.coverage.clip_rate_max,
    )
    layer_rows = artifacts.read_layers(layout.evaluate.layers)
    inputs = Inputs(cal, images, union, layer_rows, params.remedies, field)
    found = remedies.run(calib, scorer, inputs)
    remedy_files.write_all(layout.remedies, found, view, qp.round_mode)
    # each scene's chosen remedy on evaluate.backend (issue 13) -> out/remedies/recheck.json
    htp_recheck.recheck(view, htp_recheck.chosen_of(found), images, params, layout.remedies)
    for scene, r in found.scenes.items():
        print(f"remedies: {scene}: {r.verdict.why}")
        if r.verdict.captures is not None:
            print(f"remedies: {scene}: {r.verdict.captures.why}")
    ship = found.ship.name if found.ship else "none passes every scene"
    print(f"remedies: the car ships {ship}")


if __name__ == "__main__":
    run(main)
