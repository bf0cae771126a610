"""``fieldcal encodings``: inspect QNN/AIMET encodings files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import FieldcalTyper, example, fail

app = FieldcalTyper(no_args_is_help=True, help="Inspect QNN/AIMET encodings files.")

EncodingsA = Annotated[
    Path,
    typer.Argument(
        exists=True, dir_okay=False, readable=True, help="the encodings file before (A)"
    ),
]
EncodingsB = Annotated[
    Path,
    typer.Argument(exists=True, dir_okay=False, readable=True, help="the encodings file after (B)"),
]


@app.command(
    "diff",
    epilog=example(
        "fieldcal encodings diff out/quantize/encodings.json out/remedies/encodings/night.json",
        "fieldcal encodings diff a.json b.json --tolerance 0.05 --json moved.json",
    ),
)
def encodings_diff(
    a: EncodingsA,
    b: EncodingsB,
    tolerance: Annotated[
        float, typer.Option(help="report a scale that moved by more than this fraction", min=0.0)
    ] = 0.01,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write every change as JSON to this file")
    ] = None,
    top: Annotated[int, typer.Option(help="rows to print, largest moves first", min=0)] = 30,
) -> None:
    """Tensors whose range, scale or offset moved between two encodings files, by size."""
    from pipeline.atomic import write_json
    from pipeline.quantization import encodings_json

    try:
        enc_a, enc_b = encodings_json.read(a), encodings_json.read(b)
    except UnicodeDecodeError:
        raise fail(f"{a} or {b} is not a text file; expected two encodings JSON files") from None
    changes, only_a, only_b = encodings_json.diff(enc_a, enc_b, tolerance)

    def bits(e: encodings_json.LoadedEncodings, kind: str, name: str) -> int:
        return (e.activations if kind == "activation" else e.params)[name][0].bitwidth

    typer.echo(
        f"{len(changes)} tensor(s) moved beyond {tolerance:.2%} in scale or by an offset"
        f" step; {len(only_a)} only in A, {len(only_b)} only in B"
    )
    if changes:
        typer.echo(
            f"{'tensor':<28} {'kind':<10} {'bits':>7} {'scale %':>9} {'offset':>6}  "
            "range A -> range B"
        )
    for c in changes[:top]:
        bw = f"{bits(enc_a, c.kind, c.tensor)}->{bits(enc_b, c.kind, c.tensor)}"
        typer.echo(
            f"{c.tensor:<28} {c.kind:<10} {bw:>7} {100 * c.scale_change:>9.2f} "
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
