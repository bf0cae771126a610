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
captures_app = typer.Typer(no_args_is_help=True, help="Add field captures to datasets/.")
app.add_typer(captures_app, name="captures")
scenes_app = typer.Typer(invoke_without_command=True, help="Scene counts and overrides.")
app.add_typer(scenes_app, name="scenes")

ParamsOpt = Annotated[
    Path, typer.Option("--params", help="params.yaml of the project", dir_okay=False)
]
RootOpt = Annotated[Path, typer.Option("--root", help="project root", file_okay=False)]


def _fail(err: PipelineError) -> typer.Exit:
    typer.echo(f"fieldcal: {err}", err=True)
    return typer.Exit(1)


def _load(root: Path, params: Path | None) -> Params:
    return load_params(params if params is not None else root / "params.yaml")


def _params_and_output(root: Path, params: Path | None, *parts: str) -> tuple[Params, Path]:
    """The project's params and one of its stage outputs (under ``paths.out``), which must
    exist; a user mistake or a missing output ends in one message and exit 1."""
    try:
        p = _load(root, params)
    except PipelineError as err:
        raise _fail(err) from None
    path = root / p.paths.out / Path(*parts)
    if not path.is_file():
        typer.echo(f"fieldcal: {path} not found; run `dvc repro` first", err=True)
        raise typer.Exit(1)
    return p, path


@params_app.command("check")
def params_check(root: RootOpt = Path("."), params: ParamsOpt | None = None) -> None:
    """Validate params.yaml against dvc.yaml and the data; print the effective configuration."""
    from pipeline.data.checks import check_project

    try:
        check = check_project(root, params if params is not None else root / "params.yaml")
    except PipelineError as err:
        raise _fail(err) from None
    typer.echo(json.dumps(check.params.model_dump(mode="json"), indent=2, sort_keys=True))
    for w in check.scenes.warnings:
        typer.echo(f"warning: {w}", err=True)
    if not check.manifest_read:
        typer.echo("note: no manifest yet; scene names checked against sidecars only", err=True)
    for e in check.errors:
        typer.echo(f"fieldcal: params.yaml: {e}", err=True)
    if check.errors:
        raise typer.Exit(1)


@demo_app.command("init")
def demo_init(
    root: RootOpt = Path("."),
    params: ParamsOpt | None = None,
    track: Annotated[bool, typer.Option(help="track the data and model with `dvc add`")] = True,
) -> None:
    """Lay down the demo model and data (idempotent; never overwrites a file you changed)."""
    from pipeline.data import demo

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
    if track and (root / ".dvc").is_dir():
        # Data and model as DVC sees a real project: one .dvc per session, so `dvc push`
        # and `dvc pull` carry them and `git status` shows exactly what changed.
        targets = [p.paths.datasets / "generic", p.model.path] + [
            p.paths.datasets / "vehicle" / s.name for s in demo.SESSIONS
        ]
        code = _dvc(root, "add", "-q", *[str(t) for t in targets])
        if code != 0:
            typer.echo(f"fieldcal: `dvc add` of the demo data failed ({code})", err=True)
            raise typer.Exit(code)


def _dvc(root: Path, *args: str) -> int:
    """Run this environment's dvc with this environment's python first on PATH."""
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.call([str(Path(bindir) / "dvc"), *args], cwd=root, env=env)


@demo_app.command("run")
def demo_run(root: RootOpt = Path("."), params: ParamsOpt | None = None) -> None:
    """demo init, then `dvc repro`, then the per-scene summary and the report's path."""
    demo_init(root, params, track=True)
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
    _, path = _params_and_output(root, params, "evaluate", "metrics.json")
    from pipeline.analysis.evaluate import gate_failures

    metrics = json.loads(path.read_text(encoding="utf-8"))
    failures = [f for s, m in sorted(metrics["scenes"].items()) for f in gate_failures(s, m)]
    for f in failures:
        typer.echo(f"FAIL {f.line()}")
    if failures:
        raise typer.Exit(1)
    typer.echo(f"gate: all {len(metrics['scenes'])} scenes pass")


@app.command("doctor")
def doctor(
    fix: Annotated[bool, typer.Option("--fix", help="move them to the quarantine")] = False,
    restore: Annotated[bool, typer.Option("--restore", help="move quarantined back")] = False,
    root: RootOpt = Path("."),
    params: ParamsOpt | None = None,
) -> None:
    """Entries in datasets/ that DVC cannot hash (--fix moves them aside, --restore moves them
    back); then the manifest's quarantined and skipped files, with counts per reason."""
    import pyarrow.parquet as pq

    from pipeline.data import doctor as doc

    try:
        p = _load(root, params)
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
    except PipelineError as err:
        raise _fail(err) from None
    for f in findings:
        typer.echo(f"{'quarantined' if fix else 'found':<12} {f.line()}")
    if findings and not fix and not restore:
        typer.echo(f"fieldcal: {len(findings)} entries DVC cannot hash; `fieldcal doctor --fix`")
        raise typer.Exit(1)
    manifest = root / p.paths.out / "ingest" / "manifest.parquet"
    if not manifest.is_file():
        return
    rows = [r for r in pq.read_table(manifest).to_pylist() if r["status"] != "ok"]
    by_reason: dict[str, list[str]] = {}
    for r in rows:
        by_reason.setdefault(f"{r['status']}: {r['reason']}", []).append(r["path"])
    for reason, paths in sorted(by_reason.items()):
        typer.echo(f"{len(paths):5d}  {reason}")
        for path in paths:
            typer.echo(f"       {path}")
    typer.echo(f"{len(rows)} file(s) not used")


ExistingFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]


@captures_app.command("add")
def captures_add(
    src: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="folder of images")],
    session: Annotated[str, typer.Option(help="session name: datasets/vehicle/<session>/")],
    scene: Annotated[str | None, typer.Option(help="scene of every image (else automatic)")] = None,
    vehicle: Annotated[str | None, typer.Option()] = None,
    camera: Annotated[str | None, typer.Option()] = None,
    track: Annotated[bool, typer.Option(help="track the session with `dvc add`")] = True,
    root: RootOpt = Path("."),
    params: ParamsOpt | None = None,
) -> None:
    """Copy a folder of captures into a new session; report what was added and why not."""
    from pipeline.data.captures import NewSession, add_session
    from pipeline.layout import Layout
    from pipeline.params import check_scene_name

    try:
        p = _load(root, params)
        if scene is not None:
            check_scene_name(scene, "--scene")
        rep = add_session(
            src,
            root / p.paths.datasets,
            NewSession(session, scene, vehicle, camera),
            p.ingest,
            p.curate.near_duplicate_distance,
            Layout(root / p.paths.out).ingest.manifest,
        )
    except PipelineError as err:
        raise _fail(err) from None
    for name in rep.added:
        typer.echo(f"added        {name}")
    for name, other, bits in rep.near_duplicates:
        typer.echo(f"near-dup     {name}: within {bits} bits of {other} (added, flagged)")
    for name, other in rep.duplicates:
        typer.echo(f"duplicate    {name}: same bytes as {other} (not copied)")
    for name, why in rep.quarantined:
        typer.echo(f"quarantined  {name}: {why} (not copied)")
    for name, why in rep.skipped:
        typer.echo(f"skipped      {name}: {why}")
    typer.echo(
        f"{len(rep.added)} added to {rep.folder}, {len(rep.near_duplicates)} flagged, "
        f"{len(rep.duplicates)} duplicates, {len(rep.quarantined)} quarantined, "
        f"{len(rep.skipped)} skipped"
    )
    if rep.added and track:
        code = _dvc(root, "add", "-q", str(rep.folder.relative_to(root)))
        if code != 0:
            typer.echo(
                f"fieldcal: `dvc add {rep.folder}` failed ({code}); the files are in "
                "place, track them by hand",
                err=True,
            )
            raise typer.Exit(1)


@scenes_app.callback()
def scenes(ctx: typer.Context, root: RootOpt = Path("."), params: ParamsOpt | None = None) -> None:
    """Images per scene, source and session (from the ingest manifest)."""
    if ctx.invoked_subcommand is not None:
        return
    import pyarrow.parquet as pq

    _, path = _params_and_output(root, params, "ingest", "manifest.parquet")
    counts: dict[tuple[str, str, str, str], int] = {}
    for r in pq.read_table(path).to_pylist():
        if r["status"] == "ok":
            key = (r["scene"], r["source"], r["session"], r["scene_origin"])
            counts[key] = counts.get(key, 0) + 1
    typer.echo(f"{'scene':<12} {'source':<8} {'session':<32} {'tagged by':<14} images")
    for (scene, source, session, origin), n in sorted(counts.items()):
        typer.echo(f"{scene:<12} {source:<8} {session:<32} {origin:<14} {n:>6}")


@scenes_app.command("set")
def scenes_set(
    pattern: Annotated[str, typer.Argument(help="glob over paths under datasets/")],
    scene: Annotated[str, typer.Argument()],
    root: RootOpt = Path("."),
    params: ParamsOpt | None = None,
) -> None:
    """Set the scene of every image matching PATTERN, in its folder's sidecar.json."""
    from pipeline.data.checks import new_scene_note
    from pipeline.data.sidecars import set_scene

    try:
        p = _load(root, params)
        note = new_scene_note(root, p, scene)
        changed = set_scene(root / p.paths.datasets, pattern, scene, p.ingest.extensions)
    except PipelineError as err:
        raise _fail(err) from None
    if note:
        typer.echo(f"warning: {note}", err=True)
    typer.echo(f"{len(changed)} image(s) set to scene {scene!r}; run `dvc repro` to apply")


@app.command("coverage")
def coverage_cmd(
    session: Annotated[str, typer.Argument(help="a session under datasets/vehicle/")],
    root: RootOpt = Path("."),
    params: ParamsOpt | None = None,
) -> None:
    """Does SESSION fit the current encodings? requantize yes/no per scene, with the reason."""
    from pipeline.analysis.coverage import session_report

    try:
        p = _load(root, params)
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
    except PipelineError as err:
        raise _fail(err) from None
    except FileNotFoundError as err:
        typer.echo(f"fieldcal: {err.filename} not found; run `dvc repro` first", err=True)
        raise typer.Exit(1) from None
    if not report.verdicts:
        typer.echo(
            f"fieldcal: no ingested images for session {session!r}; run `dvc repro` "
            "(ingest) after adding it",
            err=True,
        )
        raise typer.Exit(1)
    for scene, v in report.verdicts[session].items():
        typer.echo(f"{session} {scene}: requantize {v['requantize']} - {v['reason']}")
        for r in v["tensors"][:5]:
            typer.echo(
                f"    {r['tensor']:<10} clip {r['clip_rate']:.3%}  SQNR "
                f"{r['sqnr_db']:.1f} dB (evaluation set {r['baseline_sqnr_db']:.1f})  "
                f"range use {r['range_use']:.0%}"
            )
    typer.echo(f"({report.measured} images measured, {report.cached} from the cache)")


@app.command("curate")
def curate_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print, write nothing")] = False,
    root: RootOpt = Path("."),
    params: ParamsOpt | None = None,
) -> None:
    """What curation picks with the current params, and why. Without --dry-run, DVC writes the
    outputs (`dvc repro curate`), so dvc.lock stays in step; --dry-run writes nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.data import curate as curate_mod
    from pipeline.layout import Layout

    p, path = _params_and_output(root, params, "ingest", "manifest.parquet")
    if dry_run:
        table = curate_mod.curate(pq.read_table(path), p.curate)
    else:  # one writer per output: the curate stage, through DVC
        code = _dvc(root, "repro", "curate")
        if code != 0:
            typer.echo(f"fieldcal: dvc repro curate failed with exit code {code}", err=True)
            raise typer.Exit(code)
        out = Layout(root / p.paths.out).curate
        table = pa.concat_tables([pq.read_table(out.curated), pq.read_table(out.unused)])
    for r in table.to_pylist():
        typer.echo(f"{r['role']:<12} {r['scene']:<10} {r['path']}  ({r['reason']})")
    roles = table.column("role").to_pylist()
    typer.echo(
        f"{roles.count('calibration')} calibration, {roles.count('evaluation')} "
        f"evaluation, {roles.count('unused')} unused"
    )


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
    from pipeline.quantization import encodings_json

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
