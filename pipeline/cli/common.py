"""What every command group shares: the one error handler, the common options, params loading.

Every command group is a :class:`FieldcalTyper`, whose commands run under one error handler: a
user-fixable failure (:class:`~pipeline.errors.PipelineError`) or an operating-system refusal on
a path the user gave ends in one line ``fieldcal: <message>`` and exit code 1, never a
traceback. Commands raise and let it be handled here; none catches ``PipelineError`` itself.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer

from pipeline.errors import ParamsError, PipelineError
from pipeline.params import Params, load_params

F = TypeVar("F", bound=Callable[..., Any])


def _message(err: Exception) -> str:
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or err}"
    return str(err)


def _user_errors(f: F) -> F:
    """The one error handler: ``f``'s user-fixable failures become one message and exit 1.

    ``OSError`` is caught because every path a command touches comes from the user (``--root``,
    ``--params``, a capture folder, an encodings file): a permission or a missing file there is
    the user's to fix, and a traceback would not help them.
    """

    @functools.wraps(f)
    def handled(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except (PipelineError, OSError) as err:
            typer.echo(f"fieldcal: {_message(err)}", err=True)
            raise typer.Exit(1) from None

    return cast(F, handled)


class FieldcalTyper(typer.Typer):
    """A ``typer.Typer`` whose commands and callbacks all run under the one error handler."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, **kwargs)

        def decorator(f: F) -> F:
            register(_user_errors(f))
            return f

        return decorator

    def callback(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().callback(*args, **kwargs)

        def decorator(f: F) -> F:
            register(_user_errors(f))
            return f

        return decorator


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``fieldcal: message`` on stderr; return the ``Exit`` to raise."""
    typer.echo(f"fieldcal: {message}", err=True)
    return typer.Exit(code)


# Exit codes, the same for every command (README: "Exit codes").
EXIT_OK = 0  # ran; nothing to act on
EXIT_USER = 1  # could not run: a user mistake or a missing input; stderr says which and the fix
EXIT_USAGE = 2  # the command line itself is wrong (click: unknown option, missing argument)
EXIT_ACT = 3  # ran, and found something to act on (gate fails, requantize, unused files)

EXIT_CODES = (
    "Exit codes: 0 nothing to act on; 1 a user mistake or a missing input (stderr says "
    "which); 2 a command-line usage error; 3 the check found something to act on."
)

ParamsOpt = Annotated[
    Path | None,
    typer.Option(
        "--params",
        help="params.yaml to use (default: ROOT/params.yaml)",
        dir_okay=False,
        metavar="FILE",
    ),
]
RootOpt = Annotated[
    Path,
    typer.Option("--root", help="project root: the folder holding params.yaml", file_okay=False),
]


def example(*commands: str, exit_codes: bool = False) -> str:
    """A command's help epilog: its examples, one per paragraph, and optionally the exit codes."""
    lines = "\n\n".join(f"  $ {c}" for c in commands)
    return f"Example:\n\n{lines}" + (f"\n\n{EXIT_CODES}" if exit_codes else "")


def project_params(root: Path, params: Path | None) -> Params:
    """``params`` if given, else ``root/params.yaml``, validated."""
    path = params if params is not None else root / "params.yaml"
    try:
        return load_params(path)
    except UnicodeDecodeError:
        raise ParamsError(f"{path} is not a text file; --params expects a params.yaml") from None


def stage_output(root: Path, params: Path | None, *parts: str) -> tuple[Params, Path]:
    """The project's params and one of its stage outputs (under ``paths.out``), which must
    exist; a missing output ends in one message and exit 1."""
    p = project_params(root, params)
    path = root / p.paths.out / Path(*parts)
    if not path.is_file():
        raise fail(f"{path} not found; run `dvc repro` first")
    return p, path


def run_dvc(root: Path, *args: str) -> int:
    """Run this environment's dvc with this environment's python first on PATH."""
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.call([str(Path(bindir) / "dvc"), *args], cwd=root, env=env)
