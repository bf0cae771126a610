"""Ingest: every file under ``datasets/`` becomes one manifest row, ok or quarantined with a reason.

Layout: ``datasets/<source>/...`` where ``source`` is ``generic`` or ``vehicle``; field sessions
live in ``datasets/vehicle/<session>/``. Each folder may hold a ``sidecar.json``
(:mod:`pipeline.sidecar`). Decoding results are cached by content hash, so a re-run decodes only
new or changed files; moved or renamed files hit the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image, UnidentifiedImageError

from pipeline import engine
from pipeline.atomic import write_json
from pipeline.data.scenes import AUTO_RULE, LumaStats, auto_scene
from pipeline.data.sidecars import SIDECAR_NAME, Sidecar, read_sidecar
from pipeline.errors import DataError
from pipeline.params import ComputeParams, IngestParams

DECODER_VERSION = "3"  # bump when decode/statistics change, to invalidate the cache
METADATA_FILES = {SIDECAR_NAME, "README.md", ".gitignore", ".gitkeep"}

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


@dataclass
class Decoded:
    """What decoding one file's bytes tells; cached by (sha256, decode settings)."""

    status: str
    reason: str
    format: str | None = None
    mode: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    luma: dict[str, float] = field(default_factory=dict)
    dhash: str | None = None  # 64-bit difference hash, hex (near-duplicate detection)


def dhash(gray: Image.Image) -> str:
    """64-bit difference hash: 9x8 grey thumbnail, one bit per horizontal gradient sign.
    Near-identical images differ in a few bits (Hamming distance)."""
    small = np.asarray(gray.resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _luma_stats(img: Image.Image, size: int) -> tuple[dict[str, float], str]:
    from pipeline.data.tensors import to_rgb

    rgb = to_rgb(img)
    rgb.thumbnail((size, size), Image.Resampling.BILINEAR)
    a = np.asarray(rgb, dtype=np.float64)
    y = 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]
    p01, p50, p99 = np.percentile(y, [1, 50, 99])
    stats = asdict(
        LumaStats(
            mean=float(y.mean()),
            std=float(y.std()),
            p01=float(p01),
            p50=float(p50),
            p99=float(p99),
            dark_frac=float((y <= 40).mean()),
            bright_frac=float((y >= 245).mean()),
        )
    )
    return stats, dhash(rgb.convert("L"))


def decode(path: Path, p: IngestParams) -> Decoded:
    """Decode one image fully (truncation shows here) and measure its luminance."""
    Image.MAX_IMAGE_PIXELS = p.max_image_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                fmt, mode = img.format, img.mode
                width, height = img.size
                frames = int(getattr(img, "n_frames", 1))
                if fmt == "JPEG":
                    img.draft("RGB", (p.stats_size, p.stats_size))  # reduced-size DCT decode
                img.load()
                luma, phash = _luma_stats(img, p.stats_size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return Decoded("quarantined", f"decompression bomb: {err}")
    except UnidentifiedImageError:
        return Decoded("quarantined", "not an image Pillow can identify")
    except (OSError, SyntaxError, ValueError) as err:
        return Decoded("quarantined", f"cannot decode: {_why(err)}")
    if width < 8 or height < 8:
        return Decoded("quarantined", f"image is {width}x{height}; at least 8x8 is needed")
    reason = f"{frames} frames: the first is used" if frames > 1 else ""
    return Decoded("ok", reason, fmt, mode, width, height, frames, luma, phash)


_EXPECTED_FORMAT = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".gif": "GIF",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}


def _extension_note(path: Path, fmt: str | None) -> str:
    """A note when the name's extension disagrees with the content (kept out of the decode
    cache, which is keyed by content: the same bytes may sit under two names)."""
    ext = path.suffix.lower()
    expected = _EXPECTED_FORMAT.get(ext)
    return f"extension {ext} but content is {fmt}" if expected and fmt != expected else ""


def _why(err: BaseException) -> str:
    """An error's text without the file name (rows must not depend on where the tree lives)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return err.strerror
    return str(err)


@dataclass(frozen=True)
class Found:
    rel: str  # POSIX path relative to the datasets root
    path: Path
    source: str
    session: str
    problem: str  # non-empty: the file cannot be read at all


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
            if not problem and path.suffix.lower() not in extensions:
                problem = f"skipped: extension {path.suffix or '(none)'!r} not in ingest.extensions"
            if not problem and not os.access(path, os.R_OK):
                problem = "file is not readable (permissions)"
            yield Found(rel, path, source, session, problem)


def _sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


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
            sha, size = _sha256(path)
        except OSError as err:
            return _FileResult(None, 0, None, False, f"cannot read: {_why(err)}")
    if size == 0:
        return _FileResult(sha, 0, None, False, "empty file (0 bytes)")
    hit = cache is not None and (cache / _cache_key(p) / f"{sha}.json").is_file()
    return _FileResult(sha, size, _decode_cached(path, sha, p, cache), hit)


def nearest_sidecar(
    root: Path, folder: Path, seen: dict[Path, Sidecar | None]
) -> tuple[Sidecar | None, Path]:
    """The sidecar of ``folder`` or of its nearest ancestor below ``root`` (a session's sidecar
    covers its subfolders; per-image keys are paths relative to the sidecar's folder)."""
    here = folder
    while True:
        if here not in seen:
            seen[here] = read_sidecar(here)
        if seen[here] is not None or here == root or root not in here.parents:
            return seen[here], here
        here = here.parent


@dataclass
class IngestResult:
    table: pa.Table
    decoded: int  # files actually decoded (cache misses)
    cached: int


def ingest(
    root: Path, p: IngestParams, cache: Path | None = None, cp: ComputeParams | None = None
) -> IngestResult:
    """Walk, hash and decode; rows in path order. Per-file work runs on ``cp``'s engine
    (default: ``p.workers`` local processes, 0 = one per core)."""
    found = list(walk(root, p.extensions))
    index = _StatIndex(cache / "stat-index.json" if cache is not None else None)
    # absolute paths: a cluster's workers do not share this process's working directory
    abs_cache = cache.absolute() if cache is not None else None
    jobs = [(f.path.absolute(), p, abs_cache, *index.lookup(f)) for f in found if not f.problem]
    # Files whose stat matched the index and whose decode is cached cost one small read: do
    # them here; only new or changed files go to the engine (workers, or a cluster).
    known = [_known(*j) for j in jobs]
    fresh = iter(
        engine.map_ordered(
            _process,
            [j for j, k in zip(jobs, known, strict=True) if not k],
            cp or ComputeParams(),
            p.workers,
        )
    )
    done = [_process(j) if k else next(fresh) for j, k in zip(jobs, known, strict=True)]
    index.update([f for f in found if not f.problem], done)
    results = iter(done)
    rows: list[dict[str, object]] = []
    sidecars: dict[Path, Sidecar | None] = {}
    first_by_sha: dict[str, str] = {}
    decoded = cached = 0
    for f in found:
        folder = f.path.parent
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
        d = r.decoded
        if d.status == "ok":
            note = _extension_note(f.path, d.format)
            d = replace(d, reason="; ".join(filter(None, [note, d.reason])))
        row |= {
            "status": d.status,
            "reason": d.reason,
            "format": d.format,
            "mode": d.mode,
            "width": d.width,
            "height": d.height,
            "frames": d.frames,
            "dhash": d.dhash,
        }
        meta, base = nearest_sidecar(root, folder, sidecars)
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
            assert r.sha is not None
            if r.sha in first_by_sha:
                row["duplicate_of"] = first_by_sha[r.sha]
            else:
                first_by_sha[r.sha] = f.rel
        rows.append(row)
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    return IngestResult(table, decoded, cached)
