"""DVC stage `stability`: how many calibration images are enough, per scene, as curves."""

from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq

from pipeline import model
from pipeline.atomic import write_json, write_text
from pipeline.evaluate import EvalImage, oneshot_metrics
from pipeline.params import Params
from pipeline.quantize import calibrate, stability
from pipeline.quantize.observers import MinMax
from pipeline.quantize.simulate import Encodings
from pipeline.stage import run


def main(params: Params) -> None:
    paths, qp, tp, ep = params.paths, params.quantize, params.tensors, params.evaluate
    view = model.analyze(model.load(params.model.path), qp.fold_batchnorm)
    model_sha = model.sha256_file(params.model.path)
    cal = pq.read_table(paths.out / "tensors" / "calibration" / "index.parquet")
    raws = [Path(r) for r in cal.column("raw").to_pylist()]
    stats = calibrate.collect(view, raws, tp, model_sha, paths.cache)  # cached: no model run
    cq = stability.curve_mode(qp)

    def encode(mm: MinMax) -> Encodings:
        return calibrate.compute_encodings(view, replace(stats, minmax=mm, pdfs=None), cq)

    images = [
        EvalImage(Path(r["raw"]), r["path"], r["scene"])
        for r in pq.read_table(paths.out / "tensors" / "evaluation" / "index.parquet").to_pylist()
    ]

    def scorer(scenes: set[str]) -> stability.Evaluate:
        mine = [i for i in images if i.scene in scenes]

        def score(enc: Encodings) -> tuple[float, float]:
            m = oneshot_metrics(view, enc, mine, tp, ep, "none", qp.round_mode)
            worst = min(m.values(), key=lambda s: s["output_sqnr_db"])  # "all": worst scene
            return worst["output_sqnr_db"], worst["output_cosine"]

        return score

    groups = stability.groups_by_scene(cal.column("scene").to_pylist())
    evaluated = {i.scene for i in images}
    evaluators = {g: scorer(evaluated if g == "all" else {g}) for g in groups}
    evaluators = {g: f for g, f in evaluators.items() if g == "all" or g in evaluated}
    sp = params.stability
    curves = stability.curves(
        view, stats.per_image, groups, qp, sp, params.curate.seed, encode, evaluators
    )
    mode = cq.activations.mode
    out = paths.out / "stability"
    write_json(out / "stability.json", {c.group: c.to_json(sp.tolerance, mode) for c in curves})
    lines = ["group,images,p95_scale_change,output_sqnr_db"]
    for c in curves:
        for n, ch, s in zip(c.sizes, c.p95_scale_change, c.output_sqnr_db, strict=True):
            lines.append(f"{c.group},{n},{ch!r},{'' if s is None else repr(s)}")
    write_text(out / "curves.csv", "\n".join(lines) + "\n")
    for c in curves:
        enough = f"{c.enough} images" if c.enough else f"more than the {c.images} there are"
        print(f"stability: {c.group}: scales settle within {sp.tolerance:.0%} from {enough}")


if __name__ == "__main__":
    run(main)
