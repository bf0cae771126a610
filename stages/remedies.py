"""DVC stage `remedies`: per scene, which remedy passes its gate, at what cost; chosen encodings."""

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.analysis import remedies
from pipeline.analysis.evaluate import EvalImage
from pipeline.atomic import write_json
from pipeline.graph.load import load_view
from pipeline.params import Params
from pipeline.quantization import encodings_json
from pipeline.stage import run


def main(params: Params) -> None:
    paths, qp, ep, tp = params.paths, params.quantize, params.evaluate, params.tensors
    view = load_view(params.model.path, qp.fold_batchnorm)
    model_sha = view.sha256
    enc_path = paths.out / "quantize" / "encodings.json"
    union = encodings_json.for_model(encodings_json.read(enc_path), view, enc_path)
    cal = [
        remedies.CalImage(Path(r["raw"]), r["scene"], r["source"])
        for r in pq.read_table(paths.out / "tensors" / "calibration" / "index.parquet").to_pylist()
    ]
    images = [
        EvalImage(Path(r["raw"]), r["path"], r["scene"])
        for r in pq.read_table(paths.out / "tensors" / "evaluation" / "index.parquet").to_pylist()
    ]
    layers = json.loads((paths.out / "evaluate" / "layers.json").read_text(encoding="utf-8"))
    common = remedies.shared(view, cal, union, tp, qp, model_sha, paths.cache)
    out: dict[str, dict[str, Any]] = {}
    for scene in sorted({i.scene for i in images}):
        rows = [r for r in layers.get(scene, []) if r["op_type"] != "Input"]
        key = "sqnr_layerwise_db" if all("sqnr_layerwise_db" in r for r in rows) else "sqnr_db"
        worst = [r["layer"] for r in sorted(rows, key=lambda r: (r[key], r["layer"]))]
        candidates = common + remedies.for_scene(
            view, cal, scene, union, worst, params.remedies.mixed16, tp, qp, model_sha, paths.cache
        )
        table = remedies.evaluate_remedies(
            view, candidates, images, scene, tp, ep, params.model.decoder, qp.round_mode
        )
        verdict = remedies.choose(table, scene, ep)
        out[scene] = verdict
        chosen = next((c for c in candidates if c.name == verdict["chosen"]), None)
        if chosen is not None:
            args = {
                "fieldcal": {
                    "remedy": chosen.name,
                    "scene": scene,
                    "cost": chosen.cost,
                    "model_sha256": model_sha,
                }
            }
            write_json(
                paths.out / "remedies" / "encodings" / f"{scene}.json",
                encodings_json.to_1_0_0(chosen.encodings, args),
            )
        print(f"remedies: {scene}: {verdict['why']}")
    # always present (a DVC output): which scene has chosen encodings in this folder
    write_json(
        paths.out / "remedies" / "encodings" / "chosen.json",
        {scene: v["chosen"] for scene, v in out.items()},
    )
    write_json(paths.out / "remedies" / "remedies.json", out)
    write_json(paths.out / "remedies" / "metrics.json", remedies.metrics(out))


if __name__ == "__main__":
    run(main)
