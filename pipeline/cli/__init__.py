"""The ``fieldcal`` command: the demo, the gate, and curation by hand.

One file per command group, composed here with ``add_typer``; every user mistake ends in one
message and exit code 1, never a traceback (:class:`pipeline.cli.common.FieldcalTyper`).
"""

from __future__ import annotations

from pipeline.cli import captures, checks, data, demo, encodings, params, scenes
from pipeline.cli.common import FieldcalTyper

app = FieldcalTyper(
    no_args_is_help=True,
    add_completion=False,
    help="The ``fieldcal`` command: the demo, the gate, and curation by hand.\n\n"
    "Every user mistake ends in one message and exit code 1, never a traceback.",
)
app.add_typer(demo.app, name="demo")
app.add_typer(params.app, name="params")
app.add_typer(encodings.app, name="encodings")
app.add_typer(captures.app, name="captures")
app.add_typer(scenes.app, name="scenes")
app.add_typer(checks.app)  # gate, doctor, coverage: top-level commands
app.add_typer(data.app)  # curate

__all__ = ["app", "main"]


def main() -> None:
    app()
