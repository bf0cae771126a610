"""``fieldcal scenes``: images per scene, and scene overrides in sidecar.json."""

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
    stage_output,
)

app = FieldcalTyper(
    invoke_without_command=True,
    help="Scene counts and overrides.",
    epilog=example("fieldcal scenes", "fieldcal scenes set 'vehicle/2026-11-05_car02/*' tunnel"),
)


@app.callback()
def scenes(ctx: typer.Context, root: RootOpt = Path("."), params: ParamsOpt = None) -> None:
    """Images per scene, source and session (from the ingest manifest)."""
    if ctx.invoked_subcommand is not None:
        return
    import pyarrow.parquet as pq

    _, path = stage_output(root, params, "ingest", "manifest.parquet")
    counts: dict[tuple[str, str, str, str], int] = {}
    for r in pq.read_table(path).to_pylist():
        if r["status"] == "ok":
            key = (r["scene"], r["source"], r["session"], r["scene_origin"])
            counts[key] = counts.get(key, 0) + 1
    typer.echo(f"{'scene':<12} {'source':<8} {'session':<32} {'tagged by':<14} images")
    for (scene, source, session, origin), n in sorted(counts.items()):
        typer.echo(f"{scene:<12} {source:<8} {session:<32} {origin:<14} {n:>6}")


@app.command(
    "set", epilog=example("fieldcal scenes set 'vehicle/2026-11-05_car02/00[0-4]*.jpg' tunnel")
)
def scenes_set(
    pattern: Annotated[str, typer.Argument(help="glob over paths under datasets/")],
    scene: Annotated[
        str, typer.Argument(help="scene name: lowercase letters, digits and underscores")
    ],
    root: RootOpt = Path("."),
    params: ParamsOpt = None,
) -> None:
    """Set the scene of every image matching PATTERN, in its folder's sidecar.json (exit 1 if
    nothing matches)."""
    from pipeline.data.checks import new_scene_note
    from pipeline.data.sidecars import set_scene

    p = project_params(root, params)
    note = new_scene_note(root, p, scene)
    changed = set_scene(root / p.paths.datasets, pattern, scene, p.ingest.extensions)
    if note:
        typer.echo(f"warning: {note}", err=True)
    if not changed:
        raise fail(
            f"no image under {p.paths.datasets} matches {pattern!r}; the pattern is a glob "
            "relative to datasets/, e.g. 'vehicle/<session>/*.jpg'"
        )
    typer.echo(f"{len(changed)} image(s) set to scene {scene!r}; run `dvc repro` to apply")
