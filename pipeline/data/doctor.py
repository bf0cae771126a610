"""``fieldcal doctor``: find the entries in ``datasets/`` that DVC cannot hash, and move them aside.

DVC hashes every tracked folder before any stage runs, and some entries stop it there
(measured with DVC 3.67, README "Entries DVC cannot hash"): a FIFO blocks it forever, a
broken link, a link loop, a socket or a name that is not UTF-8 end the run with an error, a
device file is read (``/dev/zero`` forever), and a link out of the tree has DVC read and cache
the outside file. :func:`scan` finds them from ``lstat`` alone (nothing is opened);
:func:`quarantine` moves each into ``<datasets>/.fieldcal-quarantine/`` (which ``.dvcignore``
excludes) and records where it came from in ``record.json``; :func:`restore` moves them back.
Nothing is ever deleted. The ``doctor`` stage runs this first in every ``dvc repro``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.atomic import write_json
from pipeline.data.walk import HAZARDS, Boundary, hazard, os_reason
from pipeline.errors import DataError

QUARANTINE = ".fieldcal-quarantine"
RECORD = "record.json"
DVCIGNORE_LINE = f"{QUARANTINE}/"


@dataclass(frozen=True)
class Finding:
    """One entry DVC cannot hash: its path under ``datasets/`` and the hazard kind."""

    path: str  # relative to datasets/, os.fsdecode form (a non-UTF-8 byte is a surrogate)
    kind: str

    @property
    def shown(self) -> str:
        """The path printable in any terminal (non-UTF-8 bytes as ``\\xff``)."""
        return os.fsencode(self.path).decode("utf-8", "backslashreplace")

    def line(self) -> str:
        return f"{self.shown}: {self.kind}: {HAZARDS[self.kind]}"


@dataclass(frozen=True)
class Quarantined:
    """A moved entry: where it was (``path``), where it is (``stored``, under the quarantine
    folder), and why."""

    path: str
    stored: str
    kind: str
    reason: str


def scan(datasets: Path, allowed_roots: Sequence[Path] = ()) -> list[Finding]:
    """Every hazard under ``datasets`` (see :data:`pipeline.data.walk.HAZARDS`), in path
    order; a hazardous folder is one finding (nothing under it is looked at). Opens nothing."""
    if not datasets.is_dir():
        raise DataError(f"datasets folder {datasets} does not exist; run `fieldcal demo init`")
    boundary = Boundary.of(datasets, allowed_roots)
    found: list[Finding] = []
    stack = [datasets]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name, reverse=True)
        for entry in entries:
            path = Path(entry.path)
            if folder == datasets and entry.name == QUARANTINE:
                continue
            rel = os.fsdecode(path.relative_to(datasets))
            kind = hazard(path, rel, boundary)
            if kind is not None:
                found.append(Finding(rel, kind))
            elif entry.is_dir(follow_symlinks=False):
                stack.append(path)
    return sorted(found, key=lambda f: os.fsencode(f.path))


def read_record(datasets: Path) -> list[Quarantined]:
    path = datasets / QUARANTINE / RECORD
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Quarantined(**e) for e in data["entries"]]
    except (ValueError, TypeError, KeyError) as err:
        raise DataError(
            f"{path} is damaged ({err}); the entries are still under {path.parent}, "
            "move them back by hand"
        ) from None


def _write_record(datasets: Path, entries: Sequence[Quarantined]) -> None:
    folder = datasets / QUARANTINE
    write_json(folder / RECORD, {"version": 1, "entries": [asdict(e) for e in entries]})
    gitignore = folder / ".gitignore"
    if not gitignore.is_file():
        gitignore.write_text("*\n", encoding="utf-8")


def ensure_dvcignore(project: Path) -> bool:
    """Add the quarantine folder to ``project/.dvcignore`` (True if the line was added)."""
    path = project / ".dvcignore"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if DVCIGNORE_LINE in text.splitlines():
        return False
    sep = "" if not text or text.endswith("\n") else "\n"
    path.write_text(f"{text}{sep}{DVCIGNORE_LINE}\n", encoding="utf-8")
    return True


def _free(target: Path) -> Path:
    """``target``, or ``target~1``, ``target~2``... the first name not taken."""
    n = 0
    candidate = target
    while os.path.lexists(candidate):
        n += 1
        candidate = target.with_name(f"{target.name}~{n}")
    return candidate


def quarantine(datasets: Path, findings: Sequence[Finding]) -> list[Quarantined]:
    """Move each finding into the quarantine folder (a rename: never a copy, so a FIFO or a
    device is never opened) and record it. Returns the entries moved now."""
    record = read_record(datasets)
    moved: list[Quarantined] = []
    try:
        for f in findings:
            src = datasets / f.path
            dst = _free(datasets / QUARANTINE / f.path)
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.rename(src, dst)
            except OSError as err:
                raise DataError(
                    f"{datasets / f.shown}: {f.kind}: {HAZARDS[f.kind]}; cannot move it to "
                    f"{datasets / QUARANTINE} ({os_reason(err)}). Move or remove it by hand, "
                    "then run `dvc repro` again"
                ) from None
            stored = os.fsdecode(dst.relative_to(datasets / QUARANTINE))
            moved.append(Quarantined(f.path, stored, f.kind, HAZARDS[f.kind]))
    finally:
        if moved:
            _write_record(datasets, [*record, *moved])
    return moved


@dataclass(frozen=True)
class Restored:
    restored: list[Quarantined]
    kept: list[tuple[Quarantined, str]]  # (entry, why it stays in quarantine)


def restore(datasets: Path, paths: Sequence[str] = ()) -> Restored:
    """Move quarantined entries back where they were (all, or those whose original path is in
    ``paths``); an entry whose place is taken again stays, with the reason."""
    record = read_record(datasets)
    wanted = set(paths)
    back: list[Quarantined] = []
    kept: list[tuple[Quarantined, str]] = []
    remaining: list[Quarantined] = []
    for e in record:
        if wanted and e.path not in wanted:
            remaining.append(e)
            continue
        src, dst = datasets / QUARANTINE / e.stored, datasets / e.path
        if not os.path.lexists(src):
            kept.append((e, f"{src} is gone; nothing to restore"))
            remaining.append(e)
            continue
        if os.path.lexists(dst):
            kept.append((e, f"{e.path} exists again; move one of them by hand"))
            remaining.append(e)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)
        back.append(e)
    if back:
        _write_record(datasets, remaining)
    return Restored(back, kept)
