"""Ingest: every file under ``datasets/`` becomes one manifest row, ok or quarantined with a reason.

Layout: ``datasets/<source>/...`` where ``source`` is ``generic`` or ``vehicle``; field sessions
live in ``datasets/vehicle/<session>/``. Each folder may hold a ``sidecar.json``
(:mod:`pipeline.data.sidecars`). The walk (:mod:`pipeline.data.walk`) finds the files, each is
hashed and decoded (:mod:`pipeline.data.decode`) on the compute engine, and the rows join what
the sidecars and the scene rule say. Decoding results are cached by content hash, so a re-run
decodes only new or changed files; moved or renamed files hit the cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pyarrow as pa

from pipeline import engine
from pipeline.atomic import write_json
from pipeline.data.decode import DECODER_VERSION, Decoded, decode, extension_note
from pipeline.data.scenes import AUTO_RULE, LumaStats, auto_scene
from pipeline.data.sidecars import Sidecar, nearest_sidecar
from pipeline.data.walk import Found, hash_file, os_reason, walk
from pipeline.params import ComputeParams, IngestParams
from pipeline.progress import progress

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),  # relative to the datasets root, POSIX
        pa.field("sha256", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("session", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # ok | quarantined | skipped
        pa.field("reason", pa.string(), nullable=False),
        pa.field("format", pa.string()),
        pa.field("mode", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("frames", pa.int32()),
        pa.field("scene", pa.string()),
        pa.field("scene_origin", pa.string()),  # sidecar | auto:luma-v1
        pa.field("scene_confidence", pa.float64()),
        pa.field("vehicle", pa.string()),
        pa.field("camera", pa.string()),
        pa.field("captured_at", pa.string()),
        pa.field("synthetic", pa.bool_()),
        pa.field("origin", pa.string()),
        pa.field("licence", pa.string()),
        pa.field("duplicate_of", pa.string()),
        pa.field("dhash", pa.string()),
        pa.field("luma_mean", pa.float64()),
        pa.field("luma_std", pa.float64()),
        pa.field("luma_p01", pa.float64()),
        pa.field("luma_p50", pa.float64()),
        pa.field("luma_p99", pa.float64()),
        pa.field("dark_frac", pa.float64()),
        pa.field("bright_frac", pa.float64()),
    ],
    metadata={"fieldcal.manifest": "1"},
)


def _cache_key(p: IngestParams) -> str:
    blob = json.dumps([DECODER_VERSION, p.max_image_pixels, p.stats_size])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _decode_cached(path: Path, sha: str, p: IngestParams, cache: Path | None) -> Decoded:
    if cache is None:
        return decode(path, p)
    entry = cache / _cache_key(p) / f"{sha}.json"
    if entry.is_file():
        try:
            return Decoded(**json.loads(entry.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            pass  # a damaged cache entry is recomputed
    d = decode(path, p)
    write_json(entry, asdict(d))
    return d


class _StatIndex:
    """path -> (size, mtime_ns, inode, sha256) of files already hashed, so a re-run reads only
    new or changed files (as DVC does). A cache: losing it costs a re-hash, nothing more."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, list[object]] = {}
        if path is not None and path.is_file():
            try:
                self.entries = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                self.entries = {}

    @staticmethod
    def _stat(f: Found) -> list[object] | None:
        try:
            st = f.path.stat()
        except OSError:
            return None
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def lookup(self, f: Found) -> tuple[str | None, int]:
        entry = self.entries.get(f.rel)
        now = self._stat(f)
        if entry is not None and now is not None and entry[:3] == now:
            return str(entry[3]), int(now[0])  # type: ignore[call-overload]
        return None, 0

    def update(self, files: Sequence[Found], results: Sequence[_FileResult]) -> None:
        if self.path is None:
            return
        fresh: dict[str, list[object]] = {}
        for f, r in zip(files, results, strict=True):
            now = self._stat(f)
            if r.sha is not None and now is not None:
                fresh[f.rel] = [*now, r.sha]
        if fresh != self.entries:
            write_json(self.path, fresh)


@dataclass(frozen=True)
class _FileResult:
    sha: str | None
    size: int
    decoded: Decoded | None  # None: not an image to decode (unreadable or empty)
    from_cache: bool
    error: str = ""


def _known(
    path: Path, p: IngestParams, cache: Path | None, known_sha: str | None, known_size: int
) -> bool:
    """Nothing to hash or decode: the stat index knows the file and the cache its decode."""
    del path
    return (
        known_sha is not None
        and known_size > 0
        and cache is not None
        and (cache / _cache_key(p) / f"{known_sha}.json").is_file()
    )


def _process(args: tuple[Path, IngestParams, Path | None, str | None, int]) -> _FileResult:
    """One file: hash (unless its stat matched the index), then decode unless the cache has
    it. Runs in a worker process."""
    path, p, cache, known_sha, known_size = args
    if known_sha is not None:
        sha, size = known_sha, known_size
    else:
        try:
            sha, size = hash_file(path)
        except OSError as err:
            return _FileResult(None, 0, None, False, f"cannot read: {os_reason(err)}")
    if size == 0:
        return _FileResult(sha, 0, None, False, "empty file (0 bytes)")
    hit = cache is not None and (cache / _cache_key(p) / f"{sha}.json").is_file()
    return _FileResult(sha, size, _decode_cached(path, sha, p, cache), hit)


@dataclass
class IngestResult:
    table: pa.Table
    decoded: int  # files actually decoded (cache misses)
    cached: int


def _hash_and_decode(
    found: Sequence[Found],
    p: IngestParams,
    cache: Path | None,
    cp: ComputeParams,
    advance: Callable[[int], None],
) -> list[_FileResult]:
    """One result per readable file of ``found``, in order. Per-file work runs on ``cp``'s
    engine (default: ``p.workers`` local processes, 0 = one per core)."""
    index = _StatIndex(cache / "stat-index.json" if cache is not None else None)
    # absolute paths: a cluster's workers do not share this process's working directory
    abs_cache = cache.absolute() if cache is not None else None
    jobs = [(f.path.absolute(), p, abs_cache, *index.lookup(f)) for f in found]
    # Files whose stat matched the index and whose decode is cached cost one small read: do
    # them here; only new or changed files go to the engine (workers, or a cluster).
    known = [_known(*j) for j in jobs]
    fresh = iter(
        engine.map_ordered(
            _process,
            [j for j, k in zip(jobs, known, strict=True) if not k],
            cp,
            p.workers,
            advance,
        )
    )
    advance(sum(known))  # known files cost one small read each, below
    done = [_process(j) if k else next(fresh) for j, k in zip(jobs, known, strict=True)]
    index.update(found, done)
    return done


def _image_columns(f: Found, d: Decoded, meta: Sidecar | None, base: Path) -> dict[str, object]:
    """A decoded file's columns: decode results, sidecar fields, luminance and scene."""
    if d.status == "ok":
        note = extension_note(f.path, d.format)
        d = replace(d, reason="; ".join(filter(None, [note, d.reason])))
    row: dict[str, object] = {
        "status": d.status,
        "reason": d.reason,
        "format": d.format,
        "mode": d.mode,
        "width": d.width,
        "height": d.height,
        "frames": d.frames,
        "dhash": d.dhash,
    }
    im = meta.for_image(f.path.relative_to(base).as_posix()) if meta is not None else None
    if im is not None:
        row |= {
            "vehicle": im.vehicle,
            "camera": im.camera,
            "captured_at": im.captured_at,
            "synthetic": im.synthetic,
            "origin": im.source,
            "licence": im.licence,
        }
    if d.luma:
        row |= {
            f"luma_{k}" if k in ("mean", "std", "p01", "p50", "p99") else k: v
            for k, v in d.luma.items()
        }
    if d.status == "ok":
        if im is not None and im.scene:
            row |= {"scene": im.scene, "scene_origin": "sidecar", "scene_confidence": 1.0}
        else:
            scene, conf = auto_scene(LumaStats(**d.luma))
            row |= {"scene": scene, "scene_origin": AUTO_RULE, "scene_confidence": conf}
    return row


def ingest(
    root: Path, p: IngestParams, cache: Path | None = None, cp: ComputeParams | None = None
) -> IngestResult:
    """Walk, hash and decode; rows in path order. Per-file work runs on ``cp``'s engine
    (default: ``p.workers`` local processes, 0 = one per core)."""
    found = list(walk(root, p.extensions, p.allowed_roots))
    readable = [f for f in found if not f.problem]
    with progress("ingest: files", len(readable)) as advance:
        results = iter(_hash_and_decode(readable, p, cache, cp or ComputeParams(), advance))
    rows: list[dict[str, object]] = []
    sidecars: dict[Path, Sidecar | None] = {}
    first_by_sha: dict[str, str] = {}
    decoded = cached = 0
    for f in found:
        row: dict[str, object] = {"path": f.rel, "source": f.source, "session": f.session}
        if f.problem:
            status = "skipped" if f.problem.startswith("skipped") else "quarantined"
            rows.append(row | {"status": status, "reason": f.problem.removeprefix("skipped: ")})
            continue
        r = next(results)
        if r.sha is not None:
            row |= {"sha256": r.sha, "size_bytes": r.size}
        if r.decoded is None:
            rows.append(row | {"status": "quarantined", "reason": r.error})
            continue
        cached += r.from_cache
        decoded += not r.from_cache
        meta, base = nearest_sidecar(root, f.path.parent, sidecars)
        row |= _image_columns(f, r.decoded, meta, base)
        if row["status"] == "ok":
            assert r.sha is not None
            if r.sha in first_by_sha:
                row["duplicate_of"] = first_by_sha[r.sha]
            else:
                first_by_sha[r.sha] = f.rel
        rows.append(row)
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    return IngestResult(table, decoded, cached)
