"""DVC stage `tensors`: curated picks -> .raw tensors and QNN input lists per role."""

import pyarrow.parquet as pq

from pipeline.atomic import write_parquet
from pipeline.data import tensors
from pipeline.graph.load import load_view
from pipeline.graph.view import check_input_spec
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.stage import run


def main(params: Params) -> None:
    paths, tp = params.paths, params.tensors
    view = load_view(params.model.path, fold_batchnorm=False)
    check_input_spec(view, tp.height, tp.width)
    curated = pq.read_table(paths.out / "curate" / "curated.parquet").to_pylist()
    for role in ("calibration", "evaluation"):
        rows = [r for r in curated if r["role"] == role]
        with progress(f"tensors ({role})", len(rows)) as advance:
            index = tensors.build_role(
                rows,
                view.input_name,
                paths.out / "tensors" / role,
                paths.datasets,
                tp,
                paths.cache / "tensors",
                advance,
            )
        write_parquet(paths.out / "tensors" / role / "index.parquet", index)
        print(f"tensors: {index.num_rows} {role} tensors")


if __name__ == "__main__":
    run(main)
