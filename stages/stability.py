"""DVC stage `stability`: how many calibration images are enough, per scene, as curves."""

from pathlib import Path

import pyarrow.parquet as pq

from pipeline.analysis import stability
from pipeline.analysis.evaluate import EvalImage
from pipeline.atomic import write_json, write_text
from pipeline.calibration import calibrate
from pipeline.graph.load import load_view
from pipeline.params import Params
from pipeline.stage import run


def main(params: Params) -> None:
    paths, qp, tp, sp = params.paths, params.quantize, params.tensors, params.stability
    view = load_view(params.model.path, qp.fold_batchnorm)
    model_sha = view.sha256
    cal = pq.read_table(paths.out / "tensors" / "calibration" / "index.parquet")
    raws = [Path(r) for r in cal.column("raw").to_pylist()]
    stats = calibrate.collect(view, raws, tp, model_sha, paths.cache)  # cached: no model run
    images = [
        EvalImage(Path(r["raw"]), r["path"], r["scene"])
        for r in pq.read_table(paths.out / "tensors" / "evaluation" / "index.parquet").to_pylist()
    ]
    curves = stability.for_calibration(
        view,
        stats,
        cal.column("scene").to_pylist(),
        images,
        tp,
        qp,
        params.evaluate,
        sp,
        params.curate.seed,
    )
    mode = stability.curve_mode(qp).activations.mode
    out = paths.out / "stability"
    write_json(out / "stability.json", {c.group: c.to_json(sp.tolerance, mode) for c in curves})
    write_text(out / "curves.csv", stability.to_csv(curves))
    for c in curves:
        enough = f"{c.enough} images" if c.enough else f"more than the {c.images} there are"
        print(f"stability: {c.group}: scales settle within {sp.tolerance:.0%} from {enough}")


if __name__ == "__main__":
    run(main)
