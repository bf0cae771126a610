"""DVC stage `tensors`: curated picks -> .raw tensors and QNN input lists per role."""

import pyarrow.parquet as pq

from pipeline.atomic import write_parquet
from pipeline.data import tensors
from pipeline.graph.load import load_view
from pipeline.graph.view import check_input_spec
from pipeline.layout import ROLES, Layout
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.stage import run


def main(params: Params) -> None:
    paths, tp = params.paths, params.tensors
    layout = Layout.of(paths)
    view = load_view(params.model.path, fold_batchnorm=False)
    check_input_spec(view, tp.height, tp.width)
    curated = pq.read_table(layout.curate.curated).to_pylist()
    for role in ROLES:
        rows = [r for r in curated if r["role"] == role]
        out = layout.tensors.role(role)
        with progress(f"tensors ({role})", len(rows)) as advance:
            index = tensors.build_role(
                rows,
                view.input_name,
                out.root,
                paths.datasets,
                tp,
                paths.cache / "tensors",
                advance,
            )
        write_parquet(out.index, index)
        print(f"tensors: {index.num_rows} {role} tensors")


if __name__ == "__main__":
    run(main)
