"""The ``fieldcal`` command: the demo, the gate, and curation by hand.

One file per command group, composed here with ``add_typer``; every user mistake ends in one
message and exit code 1, never a traceback (:class:`pipeline.cli.common.FieldcalTyper`).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from pipeline.cli import captures, checks, data, demo, deploy, encodings, params, scenes
from pipeline.cli.common import EXIT_CODES, FieldcalTyper, example


def _version() -> str:
    try:
        return version("fieldcal")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"fieldcal {_version()}")
        raise typer.Exit()


app = FieldcalTyper(
    no_args_is_help=True,
    add_completion=False,
    help="Calibration data for quantizing on-device vision models: the demo, the gate, and "
    "curation by hand. Every user mistake ends in one message and exit code 1, never a "
    "traceback.",
    epilog=example("fieldcal demo run", "fieldcal gate", "fieldcal captures --help")
    + "\n\n"
    + EXIT_CODES,
)


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="print fieldcal's version and exit",
            is_eager=True,
            callback=_show_version,
        ),
    ] = False,
) -> None:
    """Calibration data for quantizing on-device vision models."""


app.add_typer(demo.app, name="demo")
app.add_typer(params.app, name="params")
app.add_typer(encodings.app, name="encodings")
app.add_typer(captures.app, name="captures")
app.add_typer(scenes.app, name="scenes")
app.add_typer(checks.app)  # gate, doctor, coverage: top-level commands
app.add_typer(data.app)  # curate
app.add_typer(deploy.app)  # compile

__all__ = ["app", "main"]


def main() -> None:
    app()
