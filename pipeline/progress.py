"""Progress bars on a terminal, silence in CI and logs.

Two forms, both quiet unless stderr is a terminal and ``CI`` is unset:

* ``with progress("evaluating", n) as advance: ... advance(1)`` around a loop that cannot be
  wrapped (a callback handed to a library function);
* ``for scene in track("remedies", scenes): ...`` around a plain loop.

Every stage that takes more than a few seconds on the demo shows one (README: "Progress").
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; a rich progress bar when interactive, a no-op otherwise."""
    if not interactive() or total <= 0:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """``items``, one step of a progress bar each (``total`` defaults to ``len(items)``)."""
    n = total if total is not None else (len(items) if isinstance(items, Sized) else 0)
    with progress(description, n) as advance:
        for item in items:
            yield item
            advance(1)
