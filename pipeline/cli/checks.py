"""Checks a script can act on: ``fieldcal gate``, ``fieldcal doctor``, ``fieldcal coverage``.

``gate`` is a check by nature and exits 3 when a scene fails. ``doctor`` and ``coverage`` are
listings a person reads first: they exit 0 after listing, and with ``--check`` exit 3 when there
is something to act on. A listing that stops a ``set -e`` script merely because it found a
quarantined file would be a surprise; a script that wants the verdict says so with ``--check``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.common import (
    EXIT_ACT,
    FieldcalTyper,
    ParamsOpt,
    RootOpt,
    example,
    fail,
    project_params,
    stage_output,
)
from pipeline.report.numbers import percent_beside

if TYPE_CHECKING:
    from pipeline.data.doctor import Finding

app = FieldcalTyper()

CheckOpt = Annotated[
    bool, typer.Option("--check", help="exit 3 when there is something to act on (for scripts)")
]


@app.command(
    "gate",
    epilog=example(
        "fieldcal gate", "fieldcal gate --root ~/car02 || echo blocked", exit_codes=True
    ),
)
def gate(root: RootOpt = Path("."), params: ParamsOpt = None) -> None:
    """Exit 3 with one line per scene under its gate (reads the evaluate stage's metrics)."""
    _, path = stage_output(root, params, "evaluate", "metrics.json")
    from pydantic import ValidationError

    from pipeline.analysis.artifacts import read_metrics
    from pipeline.analysis.gates import gate_failures

    try:
        scenes = read_metrics(path).scenes
    except (ValueError, TypeError) as err:  # JSON or pydantic (a ValueError)
        first = err.errors()[0]["loc"] if isinstance(err, ValidationError) else err
        raise fail(
            f"{path} is not a metrics file this fieldcal reads ({first}); run `dvc repro` to "
            "write it again"
        ) from None
    failures = [f for s, m in sorted(scenes.items()) for f in gate_failures(s, m)]
    for f in failures:
        typer.echo(f"FAIL {f.line()}")
    if failures:
        raise typer.Exit(EXIT_ACT)
    typer.echo(f"gate: all {len(scenes)} scenes pass")


@app.command(
    "doctor",
    epilog=example(
        "fieldcal doctor", "fieldcal doctor --fix && dvc repro", "fieldcal doctor --check",
        exit_codes=True,
    ),
)  # fmt: skip
def doctor(
    fix: Annotated[
        bool, typer.Option("--fix", help="move entries DVC cannot hash to the quarantine area")
    ] = False,
    restore: Annotated[
        bool, typer.Option("--restore", help="move quarantined entries back where they were")
    ] = False,
    root: RootOpt = Path("."),
    params: ParamsOpt = None,
    check: CheckOpt = False,
) -> None:
    """Entries in datasets/ that DVC cannot hash (--fix moves them aside into
    datasets/.fieldcal-quarantine/, --restore moves them back; nothing is deleted), then the
    ingest manifest's quarantined and skipped files, with counts per reason. Exit 1 when such
    entries are found and not fixed: `dvc repro` would stop on them."""
    findings = _dvc_hazards(root, params, fix, restore)
    if findings and not fix and not restore:
        raise fail(f"{len(findings)} entries DVC cannot hash; run `fieldcal doctor --fix`")
    rows = _unused_files(root, params)
    if check and rows:
        raise typer.Exit(EXIT_ACT)


def _dvc_hazards(root: Path, params: Path | None, fix: bool, restore: bool) -> list[Finding]:
    from pipeline.data import doctor as doc

    p = project_params(root, params)
    datasets = root / p.paths.datasets
    if restore:
        back = doc.restore(datasets)
        for e in back.restored:
            typer.echo(f"restored     {doc.Finding(e.path, e.kind).shown}")
        for e, why in back.kept:
            typer.echo(f"kept         {doc.Finding(e.path, e.kind).shown}: {why}")
    findings = doc.scan(datasets, p.ingest.allowed_roots)
    if fix:
        doc.ensure_dvcignore(root)
        doc.quarantine(datasets, findings)
    for f in findings:
        typer.echo(f"{'quarantined' if fix else 'found':<12} {f.line()}")
    return findings


def _unused_files(root: Path, params: Path | None) -> list[dict[str, str]]:
    """Print the manifest's quarantined and skipped files by reason (nothing before ingest)."""
    import pyarrow.parquet as pq

    from pipeline.layout import Layout

    p = project_params(root, params)
    manifest = Layout(root / p.paths.out).ingest.manifest
    if not manifest.is_file():
        typer.echo("no ingest manifest yet: run `dvc repro`")
        return []
    rows = [r for r in pq.read_table(manifest).to_pylist() if r["status"] != "ok"]
    by_reason: dict[str, list[str]] = {}
    for r in rows:
        by_reason.setdefault(f"{r['status']}: {r['reason']}", []).append(r["path"])
    for reason, paths in sorted(by_reason.items()):
        typer.echo(f"{len(paths):5d}  {reason}")
        for f in paths:
            typer.echo(f"       {f}")
    typer.echo(f"{len(rows)} file(s) not used")
    return rows


@app.command(
    "coverage",
    epilog=example(
        "fieldcal coverage 2026-11-05_car02",
        "fieldcal coverage 2026-11-05_car02 --check || dvc repro",
        exit_codes=True,
    ),
)
def coverage_cmd(
    session: Annotated[
        str, typer.Argument(help="a session folder under datasets/vehicle/, already ingested")
    ],
    root: RootOpt = Path("."),
    params: ParamsOpt = None,
    check: CheckOpt = False,
) -> None:
    """Does SESSION fit the current encodings? requantize yes/no per scene, with the reason."""
    from pipeline.analysis.coverage import CoverageInputs, check_sessions

    p = project_params(root, params)
    inputs = CoverageInputs(root, p.paths, p.model.path, p.quantize.fold_batchnorm, p.tensors)
    try:
        report = check_sessions(inputs, p.coverage, p.curate.seed, session, p.compute)
    except FileNotFoundError as err:
        raise fail(f"{err.filename} not found; run `dvc repro` first") from None
    if not report.verdicts:
        raise fail(
            f"no ingested images for session {session!r}; run `dvc repro` (ingest) after adding it"
        )
    limit_clip, limit_drop = p.coverage.clip_rate_max, p.coverage.sqnr_drop_db
    requantize = False
    for scene, v in report.verdicts[session].items():
        requantize |= v.requantize == "yes"
        typer.echo(f"{session} {scene}: requantize {v.requantize} - {v.reason}")
        for r in v.tensors[:5]:
            clip, limit = percent_beside(r.clip_rate, limit_clip)
            base = r.baseline_sqnr_db
            base_text = f"{base:.2f}" if base is not None else "n/a"
            typer.echo(
                f"    {r.tensor:<10} clip {clip} (limit {limit})  SQNR "
                f"{r.sqnr_db:.2f} dB (evaluation set {base_text}, drop "
                f"{r.sqnr_drop_db:.2f}, limit {limit_drop:.2f})  "
                f"range use {r.range_use:.0%}"
            )
    typer.echo(f"({report.measured} images measured, {report.cached} from the cache)")
    if check and requantize:
        raise typer.Exit(EXIT_ACT)
