"""Adding a field session: copy captures into ``datasets/vehicle/<session>/`` with a sidecar.

Every source file is accounted for: *added* (copied byte for byte, checked by hash),
*duplicate* (the same bytes are already in the dataset or earlier in this batch: not copied),
*near duplicate* (difference hash within the threshold of an image already there: copied and
flagged), *quarantined* (not a decodable image: not copied), *skipped* (not an image
extension). The source folder is only read. The session appears all at once: files are copied
into a hidden staging folder that is renamed into place at the end.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.atomic import write_json
from pipeline.data.decode import decode, hamming
from pipeline.data.ingest import MANIFEST_SCHEMA
from pipeline.data.walk import hash_file, os_reason
from pipeline.errors import DataError
from pipeline.params import IngestParams

SESSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_session_name(name: str) -> None:
    if not SESSION_RE.match(name) or ".." in name:
        raise DataError(
            f"session name {name!r} is not allowed: use letters, digits, '_', '-', '.', start "
            "with a letter or digit, at most 100 characters, no '..' (it becomes a folder under "
            "datasets/vehicle/)"
        )


@dataclass
class AddReport:
    session: str
    folder: Path
    added: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (file, existing path)
    near_duplicates: list[tuple[str, str, int]] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _known(datasets: Path, manifest: Path | None) -> tuple[dict[str, str], dict[str, str]]:
    """sha256 -> path and path -> dhash of what the dataset holds now (manifest first)."""
    by_sha: dict[str, str] = {}
    hashes: dict[str, str] = {}
    listed = set()
    table = pq.read_table(manifest) if manifest is not None and manifest.is_file() else None
    if table is not None and table.schema.equals(MANIFEST_SCHEMA):  # else: an older manifest
        for r in table.select(["path", "sha256", "dhash", "status"]).to_pylist():
            listed.add(r["path"])
            if r["sha256"] and (datasets / r["path"]).is_file():
                by_sha.setdefault(r["sha256"], r["path"])
                if r["dhash"]:
                    hashes[r["path"]] = r["dhash"]
    for dirpath, dirnames, filenames in os.walk(datasets):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(datasets).as_posix()
            if rel in listed or name == "sidecar.json" or name.startswith("."):
                continue
            if path.is_symlink() or not path.is_file():  # never open a FIFO or a device
                continue
            try:
                by_sha.setdefault(hash_file(path)[0], rel)
            except OSError:
                continue
    return by_sha, hashes


@dataclass(frozen=True)
class NewSession:
    """The session ``captures add`` creates, ``datasets/vehicle/<name>/``, and the fields its
    sidecar gets (None: not written; the scene then comes from the automatic rule)."""

    name: str
    scene: str | None = None
    vehicle: str | None = None
    camera: str | None = None

    def sidecar(self) -> dict[str, str]:
        fields = (("scene", self.scene), ("vehicle", self.vehicle), ("camera", self.camera))
        return {k: v for k, v in fields if v is not None}


def _source_entries(src: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Every entry under ``src`` that is not a folder (links to folders included), sorted, and
    the folders that cannot be listed, with why."""
    entries: list[Path] = []
    unlisted: list[tuple[str, str]] = []

    def onerror(err: OSError) -> None:
        rel = Path(err.filename).relative_to(src).as_posix()
        unlisted.append((rel, f"folder cannot be listed ({os_reason(err)}): nothing in it copied"))

    for dirpath, dirnames, filenames in os.walk(src, onerror=onerror):
        here = Path(dirpath)
        entries += [here / d for d in dirnames if (here / d).is_symlink()]
        entries += [here / f for f in filenames]
    return sorted(entries), sorted(unlisted)


def _not_copyable(path: Path, rel: str, extensions: tuple[str, ...]) -> str:
    """Why ``path`` is not copied before reading it ("" if it may be read)."""
    if path.is_symlink():
        return "symbolic link: copy the file itself"
    if not path.is_file():  # opening a FIFO would block: never read it
        return "not a regular file (FIFO, socket or device)"
    if path.suffix.lower() not in extensions:
        return f"extension {path.suffix or '(none)'!r} is not an image"
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8 (DVC cannot track it): rename it"
    if not os.access(path, os.R_OK):
        return "file is not readable (permissions)"
    return ""


@dataclass
class _Batch:
    """What copying one source folder into ``staging`` knows so far."""

    staging: Path
    ingest: IngestParams
    near_distance: int
    by_sha: dict[str, str]  # sha256 -> path under datasets/, dataset and batch
    hashes: dict[str, str]  # path under datasets/ -> difference hash
    rep: AddReport

    def take(self, path: Path, rel: str) -> None:
        """Account for one source entry: skipped, duplicate, quarantined or copied."""
        why = _not_copyable(path, rel, self.ingest.extensions)
        if why:
            self.rep.skipped.append((rel, why))
            return
        sha, size = hash_file(path)
        if sha in self.by_sha:
            self.rep.duplicates.append((rel, self.by_sha[sha]))
            return
        d = decode(path, self.ingest) if size else None
        if d is None or d.status != "ok":
            self.rep.quarantined.append((rel, d.reason if d else "empty file (0 bytes)"))
            return
        target = self.staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        if hash_file(target)[0] != sha:
            raise DataError(f"copy of {path} does not match its source; disk problem?")
        dest_rel = f"vehicle/{self.rep.session}/{rel}"
        self.by_sha[sha] = dest_rel
        if self.near_distance and d.dhash:
            near = min(((hamming(d.dhash, h), p) for p, h in self.hashes.items()), default=None)
            if near is not None and near[0] <= self.near_distance:
                self.rep.near_duplicates.append((rel, near[1], near[0]))
            self.hashes[dest_rel] = d.dhash
        self.rep.added.append(rel)


def add_session(
    src: Path,
    datasets: Path,
    new: NewSession,
    ingest: IngestParams,
    near_distance: int,
    manifest: Path | None = None,
) -> AddReport:
    """Copy the images of ``src`` into ``datasets/vehicle/<new.name>/``; every entry of ``src``
    is accounted for in the report. ``manifest``: the ingest manifest, for the hashes of what
    the dataset already holds (files it does not list are hashed here)."""
    check_session_name(new.name)
    if not src.is_dir():
        raise DataError(f"{src} is not a folder of images")
    final = datasets / "vehicle" / new.name
    if final.exists():
        raise DataError(
            f"{final} already exists; fieldcal never overwrites a session. Choose another "
            "--session name."
        )
    by_sha, hashes = _known(datasets, manifest)
    staging = datasets / "vehicle" / f".{new.name}.incoming"
    if staging.exists():
        shutil.rmtree(staging)  # left by an interrupted earlier attempt: only our own copies
    staging.mkdir(parents=True)
    batch = _Batch(staging, ingest, near_distance, by_sha, hashes, AddReport(new.name, final))
    try:
        entries, unlisted = _source_entries(src)
        batch.rep.skipped += unlisted
        for path in entries:
            batch.take(path, path.relative_to(src).as_posix())
        meta = new.sidecar()
        if batch.rep.added and any(meta.values()):
            write_json(staging / "sidecar.json", meta)
        if not batch.rep.added:
            shutil.rmtree(staging)
            return batch.rep
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return batch.rep
