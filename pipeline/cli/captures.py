"""``fieldcal captures``: add field captures to datasets/."""

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

app = FieldcalTyper(no_args_is_help=True, help="Add field captures to datasets/.")


@app.command(
    "add",
    epilog=example(
        "fieldcal captures add /media/sd/DCIM --session 2026-11-05_car02",
        "fieldcal captures add ./tunnel --session 2026-11-07_tunnel --scene tunnel",
    ),
)
def captures_add(
    src: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="folder of images")],
    session: Annotated[str, typer.Option(help="session name: datasets/vehicle/<session>/")],
    scene: Annotated[str | None, typer.Option(help="scene of every image (else automatic)")] = None,
    vehicle: Annotated[
        str | None, typer.Option(help="vehicle id recorded in the session's sidecar.json")
    ] = None,
    camera: Annotated[
        str | None, typer.Option(help="camera id recorded in the session's sidecar.json")
    ] = None,
    track: Annotated[bool, typer.Option(help="track the session with `dvc add`")] = True,
    root: RootOpt = Path("."),
    params: ParamsOpt = None,
) -> None:
    """Copy a folder of captures into a new session; report what was added and why not.

    Exit 1 when nothing was copied (no images, or only duplicates and unreadable files)."""
    from pipeline.data.captures import NewSession, add_session
    from pipeline.layout import Layout
    from pipeline.params import check_scene_name

    p = project_params(root, params)
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
    if not rep.added:
        raise fail(f"copied nothing from {src}: no new image there (see the lines above)")
    if track:
        code = run_dvc(root, "add", "-q", str(rep.folder.relative_to(root)))
        if code != 0:
            raise fail(
                f"`dvc add {rep.folder}` failed ({code}); the files are in place, "
                "track them by hand"
            )
