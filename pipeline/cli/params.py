"""``fieldcal params``: inspect and validate params.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipeline.cli.common import FieldcalTyper, ParamsOpt, RootOpt, example

app = FieldcalTyper(no_args_is_help=True, help="Inspect and validate params.yaml.")


@app.command(
    "check", epilog=example("fieldcal params check", "fieldcal params check --params exp.yaml")
)
def params_check(root: RootOpt = Path("."), params: ParamsOpt = None) -> None:
    """Validate params.yaml against dvc.yaml and the data (scene names against the manifest and
    the sidecars); print the effective configuration (defaults filled in)."""
    from pipeline.data.checks import check_project

    check = check_project(root, params if params is not None else root / "params.yaml")
    typer.echo(json.dumps(check.params.model_dump(mode="json"), indent=2, sort_keys=True))
    for w in check.scenes.warnings:
        typer.echo(f"warning: {w}", err=True)
    if not check.manifest_read:
        typer.echo("note: no manifest yet; scene names checked against sidecars only", err=True)
    for e in check.errors:
        typer.echo(f"fieldcal: params.yaml: {e}", err=True)
    if check.errors:
        raise typer.Exit(1)
