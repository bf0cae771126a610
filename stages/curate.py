"""DVC stage `curate`: manifest -> out/curate/curated.parquet (each pick and its reason) and
unused.parquet (every other file and why)."""

import pyarrow.parquet as pq

from pipeline.data import curate
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.stage import run


def main(params: Params) -> None:
    layout = Layout.of(params.paths)
    manifest = pq.read_table(layout.ingest.manifest)
    table = curate.curate(manifest, params.curate)
    curate.write(layout.curate, table)
    roles = table.column("role").to_pylist()
    print(
        f"curate: {roles.count('calibration')} calibration, "
        f"{roles.count('evaluation')} evaluation, {roles.count('unused')} unused"
    )


if __name__ == "__main__":
    run(main)
