"""What every DVC stage shares: load params; a user error becomes one line and exit 1."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.params import Params, load_params


def run(main: Callable[[Params], None], params_path: Path = Path("params.yaml")) -> None:
    """Run ``main(params)``; a :class:`PipelineError` prints its message and exits with 1."""
    try:
        main(load_params(params_path))
    except PipelineError as err:
        print(f"fieldcal: {err}", file=sys.stderr)
        raise SystemExit(1) from None
