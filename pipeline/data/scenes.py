"""Scene tags: the sidecar's word first, otherwise a documented rule over luminance statistics.

The automatic rule (``auto:luma-v1``) reads the image's luminance (ITU-R BT.601 luma, 0-255) on a
thumbnail:

* ``night``     mean luma < 50 (confidence grows as the mean falls);
* ``backlight`` at least 8 % of pixels >= 245 and at least 25 % <= 40 (bright source, dark subject);
* ``day``       everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

AUTO_RULE = "auto:luma-v1"


@dataclass(frozen=True)
class LumaStats:
    mean: float
    std: float
    p01: float
    p50: float
    p99: float
    dark_frac: float  # fraction of pixels with luma <= 40
    bright_frac: float  # fraction of pixels with luma >= 245


def auto_scene(s: LumaStats) -> tuple[str, float]:
    """(scene, confidence in [0, 1]) by the rule in the module docstring."""
    if s.mean < 50.0:
        return "night", min(1.0, 0.5 + (50.0 - s.mean) / 100.0)
    if s.bright_frac >= 0.08 and s.dark_frac >= 0.25:
        return "backlight", min(1.0, 0.5 + s.bright_frac + (s.dark_frac - 0.25))
    return "day", min(1.0, 0.5 + (s.mean - 50.0) / 200.0)


def set_scene(datasets: Path, pattern: str, scene: str, extensions: tuple[str, ...]) -> list[str]:
    """Write ``scene`` as the per-image override in each matching image's folder sidecar.
    Returns the paths changed. Images themselves are never touched."""
    from fnmatch import fnmatchcase

    from pipeline.atomic import write_json
    from pipeline.data.sidecars import SIDECAR_NAME, read_sidecar
    from pipeline.errors import DataError
    from pipeline.params import parse_params

    if pattern.startswith("/") or ".." in pattern.split("/"):
        raise DataError(f"pattern {pattern!r} must stay inside datasets/ (no '/' prefix, no '..')")
    parse_params({"curate": {"calibration": {scene: 0}}})  # the scene-name rule, one message
    from pipeline.data.ingest import nearest_sidecar

    seen: dict[Path, object] = {}
    changed: dict[Path, list[str]] = {}
    for path in sorted(datasets.rglob("*")):
        rel = path.relative_to(datasets).as_posix()
        if path.is_file() and path.suffix.lower() in extensions and fnmatchcase(rel, pattern):
            side, base = nearest_sidecar(datasets, path.parent, seen)  # type: ignore[arg-type]
            if side is None:  # no sidecar yet: the session's folder (or the image's) gets one
                parts = path.relative_to(datasets).parts
                base = datasets.joinpath(*parts[:2]) if parts[0] == "vehicle" else path.parent
            changed.setdefault(base, []).append(path.relative_to(base).as_posix())
    out = []
    for folder, names in changed.items():
        side = read_sidecar(folder)
        data = side.model_dump(exclude_none=True) if side is not None else {}
        images = data.setdefault("images", {})
        for name in names:
            images.setdefault(name, {})["scene"] = scene
            out.append((folder / name).relative_to(datasets).as_posix())
        write_json(folder / SIDECAR_NAME, data)
    return out
