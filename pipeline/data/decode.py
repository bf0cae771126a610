"""Decoding one image: format, size, frames, luminance statistics and a difference hash.

Everything here depends on the file's bytes only (and the decode settings), so results are
cached by content hash (:mod:`pipeline.data.ingest`); bump :data:`DECODER_VERSION` when what
this module computes changes.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.data.scenes import LumaStats
from pipeline.data.tensors import to_rgb
from pipeline.data.walk import os_reason
from pipeline.params import IngestParams

DECODER_VERSION = "3"  # bump when decode/statistics change, to invalidate the cache


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
    """Bits that differ between two hex difference hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def luma_stats(img: Image.Image, size: int) -> tuple[dict[str, float], str]:
    """Luminance statistics (:class:`LumaStats` as a dict) and the difference hash, both on a
    thumbnail of longest side ``size``."""
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
                luma, phash = luma_stats(img, p.stats_size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return Decoded("quarantined", f"decompression bomb: {err}")
    except UnidentifiedImageError:
        return Decoded("quarantined", "not an image Pillow can identify")
    except (OSError, SyntaxError, ValueError) as err:
        return Decoded("quarantined", f"cannot decode: {os_reason(err)}")
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


def extension_note(path: Path, fmt: str | None) -> str:
    """A note when the name's extension disagrees with the content (kept out of the decode
    cache, which is keyed by content: the same bytes may sit under two names)."""
    ext = path.suffix.lower()
    expected = _EXPECTED_FORMAT.get(ext)
    return f"extension {ext} but content is {fmt}" if expected and fmt != expected else ""
