"""``fieldcal params``: inspect and validate params.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipeline.cli.common import FieldcalTyper, ParamsOpt, RootOpt, example, project_params

app = FieldcalTyper(no_args_is_help=True, help="Inspect and validate params.yaml.")


@app.command(
    "check", epilog=example("fieldcal params check", "fieldcal params check --params exp.yaml")
)
def params_check(root: RootOpt = Path("."), params: ParamsOpt = None) -> None:
    """Validate params.yaml and print the effective configuration (defaults filled in)."""
    p = project_params(root, params)
    typer.echo(json.dumps(p.model_dump(mode="json"), indent=2, sort_keys=True))
