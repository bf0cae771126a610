"""``fieldcal curate``: what curation picks with the current params, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import FieldcalTyper, ParamsOpt, RootOpt, example, stage_output

app = FieldcalTyper()


@app.command("curate", epilog=example("fieldcal curate --dry-run"))
def curate_cmd(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the picks, write nothing under out/curate")
    ] = False,
    root: RootOpt = Path("."),
    params: ParamsOpt = None,
) -> None:
    """What curation picks with the current params, and why (--dry-run writes nothing)."""
    import pyarrow.parquet as pq

    from pipeline.data import curate as curate_mod

    p, path = stage_output(root, params, "ingest", "manifest.parquet")
    table = curate_mod.curate(pq.read_table(path), p.curate)
    for r in table.to_pylist():
        typer.echo(f"{r['role']:<12} {r['scene']:<10} {r['path']}  ({r['reason']})")
    roles = table.column("role").to_pylist()
    typer.echo(
        f"{roles.count('calibration')} calibration, {roles.count('evaluation')} "
        f"evaluation, {roles.count('unused')} unused"
    )
    if not dry_run:
        curate_mod.write(root / p.paths.out / "curate", table)
