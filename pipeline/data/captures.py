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
from pipeline.data.walk import hash_file
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
            if rel in listed or name == "sidecar.json" or name.startswith(".") or path.is_symlink():
                continue
            try:
                by_sha.setdefault(hash_file(path)[0], rel)
            except OSError:
                continue
    return by_sha, hashes


def add_session(
    src: Path,
    datasets: Path,
    session: str,
    ingest: IngestParams,
    near_distance: int,
    sidecar: dict[str, str | None],
    manifest: Path | None = None,
) -> AddReport:
    check_session_name(session)
    if not src.is_dir():
        raise DataError(f"{src} is not a folder of images")
    final = datasets / "vehicle" / session
    if final.exists():
        raise DataError(
            f"{final} already exists; fieldcal never overwrites a session. Choose another "
            "--session name."
        )
    by_sha, hashes = _known(datasets, manifest)
    staging = datasets / "vehicle" / f".{session}.incoming"
    if staging.exists():
        shutil.rmtree(staging)  # left by an interrupted earlier attempt: only our own copies
    staging.mkdir(parents=True)
    rep = AddReport(session, final)
    images: dict[str, dict[str, object]] = {}
    try:
        for path in sorted(p for p in src.rglob("*") if not p.is_dir() or p.is_symlink()):
            rel = path.relative_to(src).as_posix()
            if path.is_symlink():
                rep.skipped.append((rel, "symbolic link: copy the file itself"))
                continue
            if not path.is_file():  # opening a FIFO would block: never read it
                rep.skipped.append((rel, "not a regular file (FIFO, socket or device)"))
                continue
            if path.suffix.lower() not in ingest.extensions:
                rep.skipped.append((rel, f"extension {path.suffix or '(none)'!r} is not an image"))
                continue
            sha, size = hash_file(path)
            if sha in by_sha:
                rep.duplicates.append((rel, by_sha[sha]))
                continue
            d = decode(path, ingest) if size else None
            if d is None or d.status != "ok":
                rep.quarantined.append((rel, d.reason if d else "empty file (0 bytes)"))
                continue
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            if hash_file(target)[0] != sha:
                raise DataError(f"copy of {path} does not match its source; disk problem?")
            dest_rel = f"vehicle/{session}/{rel}"
            by_sha[sha] = dest_rel
            if near_distance and d.dhash:
                near = min(((hamming(d.dhash, h), p) for p, h in hashes.items()), default=None)
                if near is not None and near[0] <= near_distance:
                    rep.near_duplicates.append((rel, near[1], near[0]))
                hashes[dest_rel] = d.dhash
            rep.added.append(rel)
            images[rel] = {}
        meta = {k: v for k, v in sidecar.items() if v is not None}
        if images and any(v for v in meta.values()):
            write_json(staging / "sidecar.json", meta)
        if not rep.added:
            shutil.rmtree(staging)
            return rep
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return rep
