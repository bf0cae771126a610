"""Checks a script can act on: ``fieldcal gate``, ``fieldcal doctor``, ``fieldcal coverage``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import (
    FieldcalTyper,
    ParamsOpt,
    RootOpt,
    fail,
    project_params,
    stage_output,
)

app = FieldcalTyper()


@app.command("gate")
def gate(root: RootOpt = Path("."), params: ParamsOpt | None = None) -> None:
    """Exit 1 with one line per scene under its gate (reads the evaluate stage's metrics)."""
    _, path = stage_output(root, params, "evaluate", "metrics.json")
    from pipeline.analysis.evaluate import gate_failures

    metrics = json.loads(path.read_text(encoding="utf-8"))
    failures = [f for s, m in sorted(metrics["scenes"].items()) for f in gate_failures(s, m)]
    for f in failures:
        typer.echo(f"FAIL {f.line()}")
    if failures:
        raise typer.Exit(1)
    typer.echo(f"gate: all {len(metrics['scenes'])} scenes pass")


@app.command("doctor")
def doctor(root: RootOpt = Path("."), params: ParamsOpt | None = None) -> None:
    """List quarantined and skipped files from the manifest, with counts per reason."""
    import pyarrow.parquet as pq

    _, path = stage_output(root, params, "ingest", "manifest.parquet")
    rows = [r for r in pq.read_table(path).to_pylist() if r["status"] != "ok"]
    by_reason: dict[str, list[str]] = {}
    for r in rows:
        by_reason.setdefault(f"{r['status']}: {r['reason']}", []).append(r["path"])
    for reason, paths in sorted(by_reason.items()):
        typer.echo(f"{len(paths):5d}  {reason}")
        for f in paths:
            typer.echo(f"       {f}")
    typer.echo(f"{len(rows)} file(s) not used")


@app.command("coverage")
def coverage_cmd(
    session: Annotated[str, typer.Argument(help="a session under datasets/vehicle/")],
    root: RootOpt = Path("."),
    params: ParamsOpt | None = None,
) -> None:
    """Does SESSION fit the current encodings? requantize yes/no per scene, with the reason."""
    from pipeline.analysis.coverage import session_report

    p = project_params(root, params)
    try:
        report = session_report(
            root,
            p.paths,
            p.model.path,
            p.quantize.fold_batchnorm,
            p.tensors,
            p.coverage,
            p.curate.seed,
            session,
            p.compute,
        )
    except FileNotFoundError as err:
        raise fail(f"{err.filename} not found; run `dvc repro` first") from None
    if not report.verdicts:
        raise fail(
            f"no ingested images for session {session!r}; run `dvc repro` (ingest) after adding it"
        )
    for scene, v in report.verdicts[session].items():
        typer.echo(f"{session} {scene}: requantize {v['requantize']} - {v['reason']}")
        for r in v["tensors"][:5]:
            typer.echo(
                f"    {r['tensor']:<10} clip {r['clip_rate']:.3%}  SQNR "
                f"{r['sqnr_db']:.1f} dB (evaluation set {r['baseline_sqnr_db']:.1f})  "
                f"range use {r['range_use']:.0%}"
            )
    typer.echo(f"({report.measured} images measured, {report.cached} from the cache)")
