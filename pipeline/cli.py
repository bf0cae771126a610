"""The ``fieldcal`` command: the demo, the gate, and curation by hand.

Every user mistake ends in one message and exit code 1, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline.errors import PipelineError
from pipeline.params import Params, load_params

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
demo_app = typer.Typer(no_args_is_help=True, help="The embedded demo: real model, real photos.")
params_app = typer.Typer(no_args_is_help=True, help="Inspect and validate params.yaml.")
app.add_typer(demo_app, name="demo")
app.add_typer(params_app, name="params")
encodings_app = typer.Typer(no_args_is_help=True, help="Inspect QNN/AIMET encodings files.")
app.add_typer(encodings_app, name="encodings")

ParamsOpt = Annotated[
    Path, typer.Option("--params", help="params.yaml of the project", dir_okay=False)
]
RootOpt = Annotated[Path, typer.Option("--root", help="project root", file_okay=False)]


def _fail(err: PipelineError) -> typer.Exit:
    typer.echo(f"fieldcal: {err}", err=True)
    return typer.Exit(1)


def _load(root: Path, params: Path | None) -> Params:
    return load_params(params if params is not None else root / "params.yaml")


@params_app.command("check")
def params_check(root: RootOpt = Path("."), params: ParamsOpt | None = None) -> None:
    """Validate params.yaml and print the effective configuration."""
    try:
        p = _load(root, params)
    except PipelineError as err:
        raise _fail(err) from None
    typer.echo(json.dumps(p.model_dump(mode="json"), indent=2, sort_keys=True))


@demo_app.command("init")
def demo_init(root: RootOpt = Path("."), params: ParamsOpt | None = None) -> None:
    """Lay down the demo model and data (idempotent; never overwrites a file you changed)."""
    from pipeline import demo

    try:
        p = _load(root, params)
        rep = demo.init(root, p.paths.datasets, p.model.path)
    except PipelineError as err:
        raise _fail(err) from None
    typer.echo(
        f"demo: {len(rep.written)} files written, {len(rep.unchanged)} already in place; "
        f"model {p.model.path} sha256 {rep.model_sha256}"
    )
    for f in rep.kept_user_files:
        typer.echo(f"demo: kept your version of {f} (differs from the demo's)", err=True)


def _dvc(root: Path, *args: str) -> int:
    """Run this environment's dvc with this environment's python first on PATH."""
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.call([str(Path(bindir) / "dvc"), *args], cwd=root, env=env)


@demo_app.command("run")
def demo_run(root: RootOpt = Path("."), params: ParamsOpt | None = None) -> None:
    """demo init, then `dvc repro`, then the per-scene summary and the report's path."""
    demo_init(root, params)
    code = _dvc(root, "repro")
    if code != 0:
        typer.echo(f"fieldcal: dvc repro failed with exit code {code}", err=True)
        raise typer.Exit(code)
    p = _load(root, params)
    summary = root / p.paths.out / "report" / "summary.md"
    typer.echo(summary.read_text(encoding="utf-8"))
    typer.echo(f"report: {(root / p.paths.out / 'report' / 'report.html').resolve()}")


@app.command("gate")
def gate(root: RootOpt = Path("."), params: ParamsOpt | None = None) -> None:
    """Exit 1 with one line per scene under its gate (reads the evaluate stage's metrics)."""
    try:
        p = _load(root, params)
    except PipelineError as err:
        raise _fail(err) from None
    path = root / p.paths.out / "evaluate" / "metrics.json"
    if not path.is_file():
        typer.echo(f"fieldcal: {path} not found; run `dvc repro` first", err=True)
        raise typer.Exit(1)
    from pipeline.evaluate import gate_failures

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

    try:
        p = _load(root, params)
    except PipelineError as err:
        raise _fail(err) from None
    path = root / p.paths.out / "ingest" / "manifest.parquet"
    if not path.is_file():
        typer.echo(f"fieldcal: {path} not found; run `dvc repro` first", err=True)
        raise typer.Exit(1)
    rows = [r for r in pq.read_table(path).to_pylist() if r["status"] != "ok"]
    by_reason: dict[str, list[str]] = {}
    for r in rows:
        by_reason.setdefault(f"{r['status']}: {r['reason']}", []).append(r["path"])
    for reason, paths in sorted(by_reason.items()):
        typer.echo(f"{len(paths):5d}  {reason}")
        for f in paths:
            typer.echo(f"       {f}")
    typer.echo(f"{len(rows)} file(s) not used")


ExistingFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]


@encodings_app.command("diff")
def encodings_diff(
    a: ExistingFile,
    b: ExistingFile,
    tolerance: Annotated[float, typer.Option(help="relative scale change to report")] = 0.01,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write JSON here")] = None,
    top: Annotated[int, typer.Option(help="rows to print")] = 30,
) -> None:
    """Tensors whose range, scale or offset moved between two encodings files, by size."""
    from pipeline.atomic import write_json
    from pipeline.quantize import encodings_json

    try:
        changes, only_a, only_b = encodings_json.diff(
            encodings_json.read(a), encodings_json.read(b), tolerance
        )
    except PipelineError as err:
        raise _fail(err) from None
    typer.echo(
        f"{len(changes)} tensor(s) moved beyond {tolerance:.2%} in scale or by an offset"
        f" step; {len(only_a)} only in A, {len(only_b)} only in B"
    )
    if changes:
        typer.echo(f"{'tensor':<28} {'kind':<10} {'scale %':>9} {'offset':>6}  range A -> range B")
    for c in changes[:top]:
        typer.echo(
            f"{c.tensor:<28} {c.kind:<10} {100 * c.scale_change:>9.2f} "
            f"{c.offset_change:>6}  [{c.min_a:.4g}, {c.max_a:.4g}] -> "
            f"[{c.min_b:.4g}, {c.max_b:.4g}]"
        )
    if json_out is not None:
        write_json(
            json_out,
            {
                "tolerance": tolerance,
                "only_in_a": only_a,
                "only_in_b": only_b,
                "changes": [vars(c) for c in changes],
            },
        )


def main() -> None:
    app()
