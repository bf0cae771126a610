"""DVC stage `curate`: manifest -> out/curate/curated.parquet (each pick and its reason) and
unused.parquet (every other file and why)."""

import pyarrow.parquet as pq

from pipeline.atomic import write_json
from pipeline.data import curate, curation_summary
from pipeline.params import Params
from pipeline.stage import run


def main(params: Params) -> None:
    out = params.paths.out
    manifest = pq.read_table(out / "ingest" / "manifest.parquet")
    table = curate.curate(manifest, params.curate)
    curate.write(out / "curate", table)
    write_json(out / "curate" / "summary.json", curation_summary.summarize(table))
    roles = table.column("role").to_pylist()
    print(
        f"curate: {roles.count('calibration')} calibration, "
        f"{roles.count('evaluation')} evaluation, {roles.count('unused')} unused"
    )


if __name__ == "__main__":
    run(main)
