"""DVC stage `stability`: how many calibration images are enough, per scene, as curves."""

from pathlib import Path

import pyarrow.parquet as pq

from pipeline.analysis import artifacts, stability
from pipeline.analysis.evaluate import OneshotScorer
from pipeline.analysis.runs import EvalImage
from pipeline.atomic import write_text
from pipeline.calibration.collect import Calibrator
from pipeline.graph.load import load_view
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.stage import run


def main(params: Params) -> None:
    qp, tp, sp, layout = params.quantize, params.tensors, params.stability, Layout.of(params.paths)
    view = load_view(params.model.path, qp.fold_batchnorm)
    cal = pq.read_table(layout.tensors.calibration.index)
    raws = [Path(r) for r in cal.column("raw").to_pylist()]
    calib = Calibrator(view, tp, qp, params.paths.cache)
    stats = calib.collect_data(raws, histograms=False)  # cached: no model run
    images = [
        EvalImage(Path(r["raw"]), r["path"], r["scene"])
        for r in pq.read_table(layout.tensors.evaluation.index).to_pylist()
    ]
    # output SQNR and cosine only: no detection decoder
    scorer = OneshotScorer(view, tp, params.evaluate, "none", qp.round_mode)
    calibration = stability.CalibrationSet(stats, cal.column("scene").to_pylist())
    curves = stability.for_calibration(scorer, calibration, images, qp, sp, params.curate.seed)
    mode = stability.curve_mode(qp).activations.mode
    out = layout.stability
    artifacts.write(out.stability, {c.group: c.record(sp.tolerance, mode) for c in curves})
    write_text(out.curves, stability.to_csv(curves))
    for c in curves:  # the report's wording: the whole set against itself proves nothing
        rec = c.record(sp.tolerance, mode)
        said = (
            f"scales settle within {sp.tolerance:.0%} from {rec.enough} of {rec.images} images"
            if artifacts.settled(rec)
            else artifacts.unsettled_text(rec)
        )
        print(f"stability: {c.group}: {said}")


if __name__ == "__main__":
    run(main)
