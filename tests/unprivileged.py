"""Run a function as an unprivileged user, so permission checks mean the same as root.

Root reads any file and lists any directory, so a test of "the process cannot read this" would
prove nothing there. :func:`call` forks; when the test runs as root, the child drops to the
``nobody`` user (uid/gid 65534) before calling the function. The result comes back pickled.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
NOBODY = 65534


@contextmanager
def shared_tmp() -> Iterator[Path]:
    """A temporary folder the unprivileged user can traverse (pytest's tmp_path is private
    to its owner); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="fieldcal-unpriv-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in [path, *path.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(path)


def call(fn: Callable[[], T]) -> T:
    """``fn()`` in a forked child, as ``nobody`` if this process is root."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 0
        try:
            os.close(r)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            payload = pickle.dumps(("ok", fn()))
        except BaseException as err:  # reported to the parent, which re-raises
            payload = pickle.dumps(("error", repr(err)))
            code = 1
        with os.fdopen(w, "wb") as fh:
            fh.write(payload)
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "error":
        raise AssertionError(f"in the unprivileged child: {value}")
    return value  # type: ignore[no-any-return]
