"""Calibration tensors from the demo's real photographs, for tests that need a few."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from pipeline.data.tensors import preprocess, write_raw
from pipeline.params import TensorsParams


def photo_raws(photos: list[Path], folder: Path, tp: TensorsParams, n: int = 3) -> list[Path]:
    """The first ``n`` demo photographs (cycled if there are fewer) as ``.raw`` tensors in
    ``folder``."""
    raws = [folder / f"{i}.raw" for i in range(n)]
    for i, raw in enumerate(raws):
        write_raw(raw, preprocess(Image.open(photos[i % len(photos)]), tp))
    return raws
