"""``fieldcal compile``: the QDQ model as a QNN context binary for a named SoC (the qnn extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import FieldcalTyper, ParamsOpt, RootOpt, example, project_params

app = FieldcalTyper()


@app.command(
    "compile",
    epilog=example(
        "fieldcal compile --soc 60",
        "fieldcal compile --qdq out/quantize/model.qdq.onnx --htp-arch 73 --out deploy",
    ),
)
def compile_cmd(
    soc: Annotated[
        int | None,
        typer.Option("--soc", help="QNN SoC model number (e.g. 60); default: params compile"),
    ] = None,
    htp_arch: Annotated[
        int | None, typer.Option("--htp-arch", help="HTP architecture (e.g. 73)")
    ] = None,
    qdq: Annotated[
        Path,
        typer.Option(
            help="the QDQ model to compile: by default what ships; e.g. a scene's "
            "out/remedies/qdq/day.qdq.onnx or the 8-bit out/quantize/model.qdq.onnx"
        ),
    ] = Path("out/remedies/qdq/ship.qdq.onnx"),
    out: Annotated[
        Path, typer.Option(help="folder for <target>/ (not under out/: DVC writes out/compile)")
    ] = Path("compiled"),
    root: RootOpt = Path("."),
    params: ParamsOpt = None,
) -> None:
    """Compile a QDQ model into an EPContext model and its QNN context binary, per target,
    with a manifest of versions and sha256 (needs `pip install 'fieldcal[qnn]'`). The compile
    stage does the same for what ships (out/remedies/qdq/ship.qdq.onnx) into out/compile/."""
    from pipeline.backends import qnn_compile

    p = project_params(root, params)
    targets = (
        [qnn_compile.Target(soc, htp_arch)]
        if soc is not None or htp_arch is not None
        else [qnn_compile.Target(t.soc_model, t.htp_arch) for t in p.compile.targets]
    )
    for done in qnn_compile.compile_by_hand(root, p, targets, root / qdq, root / out):
        typer.echo(f"{done.target.name}: {done.model} ({done.manifest.name})")
