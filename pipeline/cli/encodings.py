"""``fieldcal encodings``: inspect QNN/AIMET encodings files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import FieldcalTyper

app = FieldcalTyper(no_args_is_help=True, help="Inspect QNN/AIMET encodings files.")

ExistingFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]


@app.command("diff")
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

    changes, only_a, only_b = encodings_json.diff(
        encodings_json.read(a), encodings_json.read(b), tolerance
    )
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
