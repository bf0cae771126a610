"""Per-folder metadata sidecars (``sidecar.json``) for generic photos and field sessions.

A session folder ``datasets/vehicle/<session>/`` holds its images and one ``sidecar.json``::

    {"vehicle": "demo-car-01", "camera": "front-narrow", "captured_at": "2026-11-03T21:40:00Z",
     "scene": "night",
     "images": {"0001.png": {"scene": "tunnel", "synthetic": true, "source": "...", ...}}}

Session-level fields are defaults; ``images`` overrides them per file. Unknown keys are errors
naming the file and the key.
"""

from __future__ import annotations

import json
import os
from fnmatch import fnmatchcase
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.atomic import write_json
from pipeline.errors import DataError
from pipeline.params import SceneName, check_scene_name

SIDECAR_NAME = "sidecar.json"


class ImageMeta(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    scene: SceneName | None = None
    vehicle: str | None = None
    camera: str | None = None
    captured_at: str | None = None
    synthetic: bool | None = None
    source: str | None = Field(default=None, description="where the image (or its basis) came from")
    licence: str | None = None
    notes: str | None = None


class Sidecar(ImageMeta):
    images: dict[str, ImageMeta] = Field(default_factory=dict)

    def for_image(self, name: str) -> ImageMeta:
        base = self.model_dump(exclude={"images"})
        override = self.images.get(name)
        if override is not None:
            base.update({k: v for k, v in override.model_dump().items() if v is not None})
        return ImageMeta(**base)


def read_sidecar(folder: Path) -> Sidecar | None:
    path = folder / SIDECAR_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}). Fix or remove the sidecar.") from None
    try:
        return Sidecar.model_validate(data)
    except ValidationError as err:
        msgs = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
            msgs.append(f"{loc}: {msg}")
        raise DataError(f"{path}: invalid sidecar: " + "; ".join(msgs)) from None


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


def set_scene(datasets: Path, pattern: str, scene: str, extensions: tuple[str, ...]) -> list[str]:
    """Write ``scene`` as the per-image override in each matching image's folder sidecar.
    Returns the paths changed. Images themselves are never touched."""
    if pattern.startswith("/") or ".." in pattern.split("/"):
        raise DataError(f"pattern {pattern!r} must stay inside datasets/ (no '/' prefix, no '..')")
    check_scene_name(scene, "scene")
    seen: dict[Path, Sidecar | None] = {}
    changed: dict[Path, list[str]] = {}
    for path in sorted(datasets.rglob("*")):
        rel = path.relative_to(datasets).as_posix()
        if path.is_file() and path.suffix.lower() in extensions and fnmatchcase(rel, pattern):
            side, base = nearest_sidecar(datasets, path.parent, seen)
            if side is None:  # no sidecar yet: the session's folder (or the image's) gets one
                parts = path.relative_to(datasets).parts
                base = datasets.joinpath(*parts[:2]) if parts[0] == "vehicle" else path.parent
            changed.setdefault(base, []).append(path.relative_to(base).as_posix())
    out = []
    for folder, names in changed.items():
        found = read_sidecar(folder)
        data = found.model_dump(exclude_none=True) if found is not None else {}
        images = data.setdefault("images", {})
        for name in names:
            images.setdefault(name, {})["scene"] = scene
            out.append((folder / name).relative_to(datasets).as_posix())
        write_json(folder / SIDECAR_NAME, data)
    return out


def declared_scenes(datasets: Path) -> set[str]:
    """Every scene a sidecar under ``datasets`` names (session level or per image)."""
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(datasets):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if SIDECAR_NAME in filenames:
            side = read_sidecar(Path(dirpath))
            if side is not None:
                out |= {s for s in [side.scene, *(m.scene for m in side.images.values())] if s}
    return out
