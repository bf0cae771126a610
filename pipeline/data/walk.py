"""Walking ``datasets/``: every entry found, in path order, with what makes it unusable.

The walk never opens a file: it classifies each entry from its name, ``lstat`` and (for a
symbolic link) where the link resolves, so that a FIFO (opening it blocks), a device, a link out
of the tree (never read) or a name that is not UTF-8 is reported instead of read. The same
classification (:func:`hazard`) tells ``fieldcal doctor`` which entries DVC cannot hash.
:func:`hash_file` is the one place file bytes are hashed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.sidecars import SIDECAR_NAME
from pipeline.errors import DataError

METADATA_FILES = frozenset({SIDECAR_NAME, "README.md", ".gitignore", ".gitkeep"})

# Entries neither DVC nor fieldcal can read safely, by kind: what DVC does with each (measured,
# README "Entries DVC cannot hash") is why they are refused before anything opens them.
HAZARDS = {
    "broken_link": "broken symbolic link",
    "link_loop": "symbolic link loop",
    "link_outside_tree": (
        "symbolic link points outside the data tree and ingest.allowed_roots; refused, never opened"
    ),
    "name_not_utf8": "file name is not valid UTF-8; rename it",
    "fifo": "a FIFO (named pipe), not a regular file; refused, never opened (reading one blocks)",
    "socket": "a socket, not a regular file; refused",
    "device": "a device file, not a regular file; refused, never opened",
    "unreadable": "file is not readable (permissions)",
    "unreadable_dir": "folder cannot be listed (permissions); nothing in it is read",
}


def describe(kind: str) -> str:
    """The manifest reason for a hazard kind: ``kind: explanation``."""
    return f"{kind}: {HAZARDS[kind]}"


@dataclass(frozen=True)
class Boundary:
    """Where symbolic links may point: inside the data tree or under an allowed root."""

    root: Path  # the data tree, resolved
    allowed: tuple[Path, ...] = ()  # resolved; ingest.allowed_roots

    @classmethod
    def of(cls, root: Path, allowed: Sequence[Path] = ()) -> Boundary:
        return cls(root.resolve(), tuple(Path(os.path.realpath(a)) for a in allowed))

    def admits(self, target: Path) -> bool:
        return any(target.is_relative_to(r) for r in (self.root, *self.allowed))


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


def _mode_hazard(mode: int) -> str | None:
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return None


def hazard(path: Path, name: str, boundary: Boundary) -> str | None:
    """The hazard kind of one entry (see :data:`HAZARDS`), or None; opens nothing.

    ``name`` is the entry's path as ``os.fsdecode`` gives it (checked for UTF-8). A link is
    judged by its target: broken, a loop, outside the boundary, or a FIFO, socket or device.
    A folder is a hazard when it cannot be listed.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "name_not_utf8"
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        try:
            st = path.stat()
        except OSError as err:
            return "link_loop" if err.errno == errno.ELOOP else "broken_link"
        if not boundary.admits(Path(os.path.realpath(path))):
            return "link_outside_tree"
    kind = _mode_hazard(st.st_mode)
    if kind is not None:
        return kind
    if stat.S_ISDIR(st.st_mode):
        return None if os.access(path, os.R_OK | os.X_OK) else "unreadable_dir"
    return None if os.access(path, os.R_OK) else "unreadable"


def _problem(path: Path, rel: str, boundary: Boundary, exts: tuple[str, ...]) -> str:
    """Why ``path`` cannot be ingested ("" if it can); "skipped: ..." for a non-image name."""
    kind = hazard(path, rel, boundary)
    if kind is not None:
        return describe(kind)
    if path.is_dir():  # a link to a folder inside the tree: DVC does not follow it either
        return "skipped: symbolic link to a folder is not followed; link or copy the files"
    if path.suffix.lower() not in exts:
        return f"skipped: extension {path.suffix or '(none)'!r} not in ingest.extensions"
    return ""


def _found(root: Path, path: Path, problem: str) -> Found:
    rel_parts = path.relative_to(root).parts
    rel = os.fsencode(path.relative_to(root)).decode("utf-8", "backslashreplace")
    source = rel_parts[0] if len(rel_parts) > 1 else "(root)"
    session = rel_parts[1] if source == "vehicle" and len(rel_parts) > 2 else source
    return Found(rel, path, source, session, problem)


def walk(
    root: Path, extensions: tuple[str, ...], allowed_roots: Sequence[Path] = ()
) -> Iterator[Found]:
    """Every file under ``root`` except metadata and hidden entries, in path order (folders
    depth first); a folder that cannot be listed and a link to a folder are entries too."""
    if not root.is_dir():
        raise DataError(f"datasets folder {root} does not exist; run `fieldcal demo init`")
    boundary = Boundary.of(root, allowed_roots)
    unlisted: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=_collect(unlisted)):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        names = set(filenames)
        # links to folders (os.walk lists them with the folders and does not follow them) and
        # folders that cannot be listed or whose name is not UTF-8 are entries of their own
        for d in list(dirnames):
            path = here / d
            rel = os.fsdecode(path.relative_to(root))
            if path.is_symlink() or hazard(path, rel, boundary) is not None:
                dirnames.remove(d)
                names.add(d)
        for name in sorted(names):
            if name in METADATA_FILES or name.startswith(".") or name.endswith(".dvc"):
                continue
            path = here / name
            rel = os.fsdecode(path.relative_to(root))
            yield _found(root, path, _problem(path, rel, boundary, extensions))
    for path in unlisted:  # vanished or unlistable while walking
        yield _found(root, path, describe("unreadable_dir"))


def _collect(into: list[Path]) -> Callable[[OSError], None]:
    def onerror(err: OSError) -> None:
        into.append(Path(err.filename))

    return onerror
