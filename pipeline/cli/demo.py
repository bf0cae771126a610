"""``fieldcal demo``: the embedded demo, real model and real photos."""

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
    project_params,
    run_dvc,
)

app = FieldcalTyper(no_args_is_help=True, help="The embedded demo: real model, real photos.")


@app.command("init", epilog=example("fieldcal demo init", "fieldcal demo init --no-track"))
def demo_init(
    root: RootOpt = Path("."),
    params: ParamsOpt = None,
    track: Annotated[bool, typer.Option(help="track the data and model with `dvc add`")] = True,
) -> None:
    """Lay down the demo model and data (idempotent; never overwrites a file you changed)."""
    from pipeline.data import demo

    p = project_params(root, params)
    rep = demo.init(root, p.paths.datasets, p.model.path)
    typer.echo(
        f"demo: {len(rep.written)} files written, {len(rep.unchanged)} already in place; "
        f"model {p.model.path} sha256 {rep.model_sha256}"
    )
    for f in rep.kept_user_files:
        typer.echo(f"demo: kept your version of {f} (differs from the demo's)", err=True)
    if track and (root / ".dvc").is_dir():
        # Data and model as DVC sees a real project: one .dvc per session, so `dvc push`
        # and `dvc pull` carry them and `git status` shows exactly what changed.
        targets = [p.paths.datasets / "generic", p.model.path] + [
            p.paths.datasets / "vehicle" / s.name for s in demo.SESSIONS
        ]
        code = run_dvc(root, "add", "-q", *[str(t) for t in targets])
        if code != 0:
            raise fail(f"`dvc add` of the demo data failed ({code})", code)


@app.command("run", epilog=example("fieldcal demo run"))
def demo_run(root: RootOpt = Path("."), params: ParamsOpt = None) -> None:
    """demo init, then `dvc repro`, then the verdict, the per-scene summary and the report."""
    demo_init(root, params, track=True)
    code = run_dvc(root, "repro")
    if code != 0:
        raise fail(f"dvc repro failed with exit code {code}", code)
    p = project_params(root, params)
    summary = root / p.paths.out / "report" / "summary.md"
    typer.echo(summary.read_text(encoding="utf-8"))
    typer.echo(f"report: {(root / p.paths.out / 'report' / 'report.html').resolve()}")
