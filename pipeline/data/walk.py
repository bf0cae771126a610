"""Walking ``datasets/``: every entry found, in path order, with what makes it unreadable.

The walk never opens a file: it classifies each entry from its name and ``lstat`` so that a
FIFO (opening it blocks), a link out of the tree (never read) or a name that is not UTF-8 is
reported instead of read. :func:`hash_file` is the one place file bytes are hashed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.sidecars import SIDECAR_NAME
from pipeline.errors import DataError

METADATA_FILES = frozenset({SIDECAR_NAME, "README.md", ".gitignore", ".gitkeep"})


@dataclass(frozen=True)
class Found:
    rel: str  # POSIX path relative to the datasets root
    path: Path
    source: str
    session: str
    problem: str  # non-empty: the file cannot be read at all


def hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes) of a file's content, read in 1 MiB chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def os_reason(err: BaseException) -> str:
    """An error's text without the file name (rows must not depend on where the tree lives)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return err.strerror
    return str(err)


def _problem(
    path: Path, root: Path, root_real: Path, rel_bytes: bytes, exts: tuple[str, ...]
) -> str:
    """Why ``path`` cannot be ingested ("" if it can); "skipped: ..." for a non-image name."""
    problem = ""
    try:
        rel_bytes.decode("utf-8")
    except UnicodeDecodeError:
        problem = "file name is not valid UTF-8; rename it"
    if path.is_symlink():
        target = path.resolve()
        if not target.exists():
            problem = problem or "broken symbolic link"
        elif not target.is_relative_to(root_real):
            problem = problem or f"symbolic link points outside {root}; refused"
    if not problem and not path.is_file():  # follows in-tree links; False for FIFOs
        problem = "not a regular file (FIFO, socket or device); refused"
    if not problem and path.suffix.lower() not in exts:
        problem = f"skipped: extension {path.suffix or '(none)'!r} not in ingest.extensions"
    if not problem and not os.access(path, os.R_OK):
        problem = "file is not readable (permissions)"
    return problem


def walk(root: Path, extensions: tuple[str, ...]) -> Iterator[Found]:
    """Every file under ``root`` except metadata, sorted by path; links out of the tree flagged."""
    if not root.is_dir():
        raise DataError(f"datasets folder {root} does not exist; run `fieldcal demo init`")
    root_real = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        here = Path(dirpath)
        for d in list(dirnames):
            if d.startswith("."):
                dirnames.remove(d)
        for name in sorted(filenames):
            if name in METADATA_FILES or name.startswith(".") or name.endswith(".dvc"):
                continue
            path = here / name
            rel_parts = path.relative_to(root).parts
            rel_bytes = os.fsencode(path.relative_to(root))
            rel = rel_bytes.decode("utf-8", "backslashreplace")
            source = rel_parts[0] if len(rel_parts) > 1 else "(root)"
            session = rel_parts[1] if source == "vehicle" and len(rel_parts) > 2 else source
            problem = _problem(path, root, root_real, rel_bytes, extensions)
            yield Found(rel, path, source, session, problem)
