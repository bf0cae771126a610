"""DVC stage `curate`: manifest -> out/curate/curated.parquet (each pick and its reason) and
unused.parquet (every other file and why)."""

import pyarrow.parquet as pq

from pipeline.atomic import write_json
from pipeline.data import curate, curation_summary
from pipeline.data.checks import scene_check
from pipeline.errors import ParamsError
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.stage import run


def main(params: Params) -> None:
    layout = Layout.of(params.paths)
    manifest = pq.read_table(layout.ingest.manifest)
    # scene names in curate.* and evaluate.gates must be scenes the data knows; the sidecars
    # read here only turn an error into a warning (a declared scene with no images yet)
    check = scene_check(params, params.paths.datasets, manifest)
    for w in check.warnings:
        print(f"curate: warning: {w}")
    if check.errors:
        raise ParamsError("params.yaml: " + "\n  ".join(check.errors))
    table = curate.curate(manifest, params.curate)
    curate.write(layout.curate, table)
    write_json(layout.curate.summary, curation_summary.summarize(table))
    roles = table.column("role").to_pylist()
    print(
        f"curate: {roles.count('calibration')} calibration, "
        f"{roles.count('evaluation')} evaluation, {roles.count('unused')} unused"
    )


if __name__ == "__main__":
    run(main)
