"""``fieldcal curate``: what curation picks with the current params, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import (
    FieldcalTyper,
    ParamsOpt,
    RootOpt,
    example,
    fail,
    run_dvc,
    stage_output,
)

app = FieldcalTyper()


@app.command("curate", epilog=example("fieldcal curate --dry-run"))
def curate_cmd(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the picks, write nothing under out/curate")
    ] = False,
    root: RootOpt = Path("."),
    params: ParamsOpt = None,
) -> None:
    """What curation picks with the current params, and why. Without --dry-run, DVC writes the
    outputs (`dvc repro curate`), so dvc.lock stays in step (one writer per output); --dry-run
    writes nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.data import curate as curate_mod
    from pipeline.layout import Layout

    p, path = stage_output(root, params, "ingest", "manifest.parquet")
    if dry_run:
        table = curate_mod.curate(pq.read_table(path), p.curate)
    else:
        code = run_dvc(root, "repro", "curate")
        if code != 0:
            raise fail(f"dvc repro curate failed with exit code {code}", code)
        out = Layout(root / p.paths.out).curate
        table = pa.concat_tables([pq.read_table(out.curated), pq.read_table(out.unused)])
    for r in table.to_pylist():
        typer.echo(f"{r['role']:<12} {r['scene']:<10} {r['path']}  ({r['reason']})")
    roles = table.column("role").to_pylist()
    typer.echo(
        f"{roles.count('calibration')} calibration, {roles.count('evaluation')} "
        f"evaluation, {roles.count('unused')} unused"
    )
