"""Images to model inputs: preprocessing, QNN ``.raw`` files and ``input_list.txt`` (docs §9.1-2).

A ``.raw`` file has no header: float32 little-endian, row-major, one image (batch 1), in the layout
set by ``tensors.layout`` (NHWC for legacy QNN/SNPE converters, NCHW for qairt-converter).
``input_list.txt`` has one line per inference; a single-input model gets one path per line, a
multi-input one ``name:=path`` pairs separated by spaces. No comment lines: a leading ``#`` would
be read as an output-selection line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray
from PIL import Image, ImageOps

from pipeline.atomic import atomic_path, write_text
from pipeline.errors import DataError
from pipeline.params import TensorsParams

RAW_DTYPE = np.dtype("<f4")


def spec_key(p: TensorsParams) -> str:
    """A short hash of everything that changes a tensor's bytes (for content-addressed caches)."""
    return hashlib.sha256(p.model_dump_json().encode()).hexdigest()[:16]


def to_rgb(img: Image.Image) -> Image.Image:
    """EXIF orientation applied, first frame, 8-bit RGB (16-bit and float modes rescaled)."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = max(float(arr.max()), 1.0)
        img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / max(hi - lo, 1e-12) * 255.0
        img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def preprocess(img: Image.Image, p: TensorsParams) -> NDArray[np.float32]:
    """One image as a (1, H, W, 3) or (1, 3, H, W) float32 array per ``p``."""
    rgb = to_rgb(img)
    if p.resize == "stretch":
        canvas = rgb.resize((p.width, p.height), Image.Resampling.BILINEAR)
    else:
        scale = min(p.width / rgb.width, p.height / rgb.height)
        w = max(1, round(rgb.width * scale))
        h = max(1, round(rgb.height * scale))
        resized = rgb.resize((w, h), Image.Resampling.BILINEAR)
        canvas = Image.new("RGB", (p.width, p.height), (0, 0, 0))
        canvas.paste(resized, ((p.width - w) // 2, (p.height - h) // 2))
    x_hwc = np.asarray(canvas, dtype=np.float32)  # (H, W, 3) RGB
    if p.color == "BGR":
        x_hwc = x_hwc[:, :, ::-1]
    x_hwc = np.divide(
        x_hwc - np.asarray(p.mean, np.float32), np.asarray(p.std, np.float32), dtype=np.float32
    )
    x_nhwc = x_hwc[None]  # (H,W,C) -> (1,H,W,C)
    if p.layout == "NCHW":
        return np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))  # (1,H,W,C) -> (1,C,H,W)
    return np.ascontiguousarray(x_nhwc)


def raw_size(p: TensorsParams) -> int:
    return p.height * p.width * 3 * RAW_DTYPE.itemsize


def write_raw(path: Path, x: NDArray[np.float32]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(np.ascontiguousarray(x, dtype=RAW_DTYPE).tobytes())


def read_raw(path: Path, p: TensorsParams, model_layout: str = "NCHW") -> NDArray[np.float32]:
    """Read one .raw (layout ``p.layout``) as the (1, ...) array the model takes
    (``model_layout`` NCHW or NHWC)."""
    data = np.fromfile(path, dtype=RAW_DTYPE)
    if data.size * RAW_DTYPE.itemsize != raw_size(p):
        raise DataError(
            f"{path} has {data.size * 4} bytes; tensors params ({p.height}x{p.width}x3 float32) "
            f"need {raw_size(p)}. Re-run the tensors stage."
        )
    if p.layout == "NHWC":
        x = data.reshape(1, p.height, p.width, 3)
    else:
        x = data.reshape(1, 3, p.height, p.width)
    return to_layout(x.astype(np.float32), p.layout, model_layout)


def to_layout(x: NDArray[np.float32], src: str, dst: str) -> NDArray[np.float32]:
    """A (1, ...) tensor in layout ``src`` (NCHW or NHWC) as a contiguous one in ``dst``."""
    if src == "NHWC" and dst == "NCHW":
        x = x.transpose(0, 3, 1, 2)  # (1,H,W,C) -> (1,C,H,W)
    elif src == "NCHW" and dst == "NHWC":
        x = x.transpose(0, 2, 3, 1)  # (1,C,H,W) -> (1,H,W,C)
    return np.ascontiguousarray(x)


def format_input_list(paths: Sequence[Sequence[tuple[str, str]]]) -> str:
    """One line per inference: a bare path for one input, ``name:=path`` pairs for several."""
    lines = []
    for inputs in paths:
        for _, path in inputs:
            if any(c.isspace() for c in path):
                raise DataError(f"tensor path {path!r} contains white space; QNN cannot read it")
        if len(inputs) == 1:
            lines.append(inputs[0][1])
        else:
            lines.append(" ".join(f"{name}:={path}" for name, path in inputs))
    return "".join(line + "\n" for line in lines)


def parse_input_list(text: str) -> list[list[tuple[str, str]]]:
    """Inverse of :func:`format_input_list`; output-selection lines (``#``, ``%``) are skipped."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", "%")):
            continue
        items = []
        for tok in line.split():
            name, sep, path = tok.partition(":=")
            items.append((name, path) if sep else ("", tok))
        out.append(items)
    return out


@dataclass(frozen=True)
class TensorJob:
    sha256: str
    source: Path  # the image file
    name: str  # file name of the .raw (content-addressed)


def materialize(
    jobs: Sequence[TensorJob], out_dir: Path, p: TensorsParams, cache_dir: Path | None
) -> Iterator[Path]:
    """Write one .raw per job into ``out_dir``; a tensor cached by (content, params) is linked.

    Yields the written paths in job order.
    """
    cache = cache_dir / spec_key(p) if cache_dir is not None else None
    for job in jobs:
        dst = out_dir / job.name
        cached = cache / f"{job.sha256}.raw" if cache is not None else None
        if cached is None or not cached.is_file() or cached.stat().st_size != raw_size(p):
            with Image.open(job.source) as img:
                img.load()
                x = preprocess(img, p)
            if cached is None:
                write_raw(dst, x)
                yield dst
                continue
            write_raw(cached, x)
        _link_or_copy(cached, dst)
        yield dst


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def write_input_list(path: Path, lines: Sequence[Sequence[tuple[str, str]]]) -> None:
    write_text(path, format_input_list(lines))


INDEX_SCHEMA = pa.schema(
    [
        pa.field("line", pa.int32(), nullable=False),  # 0-based line in input_list.txt
        # the .raw file from the project root (absolute with tensors.list_paths: absolute)
        pa.field("raw", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),  # source image, relative to datasets/
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("scene", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("session", pa.string(), nullable=False),
    ],
    metadata={"fieldcal.tensor_index": "1"},
)


def build_role(
    rows: Sequence[dict[str, Any]],
    input_name: str,
    role_dir: Path,
    datasets: Path,
    p: TensorsParams,
    cache: Path | None,
    progress: Callable[[int], None] | None = None,
) -> pa.Table:
    """Write ``role_dir/raw/*.raw`` and ``role_dir/input_list.txt`` for curated ``rows``.

    Paths in the list are relative to the current directory (the project root, where dvc
    runs), to ``role_dir`` (``list``: the folder is self-contained) or absolute, per
    ``p.list_paths``; the index's ``raw`` column is the project-relative (or absolute) path
    either way. Returns the index table.
    """
    raw_dir = role_dir / "raw"
    jobs = [TensorJob(r["sha256"], datasets / r["path"], f"{r['sha256'][:20]}.raw") for r in rows]
    wanted = {j.name for j in jobs}
    if raw_dir.is_dir():
        for stale in raw_dir.glob("*.raw"):
            if stale.name not in wanted:
                stale.unlink()
    lines: list[list[tuple[str, str]]] = []
    index: list[dict[str, Any]] = []
    for i, (r, raw) in enumerate(zip(rows, materialize(jobs, raw_dir, p, cache), strict=True)):
        project = str(raw.resolve()) if p.list_anchor == "absolute" else raw.as_posix()
        listed = raw.relative_to(role_dir).as_posix() if p.list_anchor == "list" else project
        lines.append([(input_name, listed)])
        index.append(
            {
                "line": i,
                "raw": project,
                "path": r["path"],
                "sha256": r["sha256"],
                "scene": r["scene"],
                "source": r["source"],
                "session": r["session"],
            }
        )
        if progress:
            progress(1)
    write_input_list(role_dir / "input_list.txt", lines)
    return pa.Table.from_pylist(index, schema=INDEX_SCHEMA)
