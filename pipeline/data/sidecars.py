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
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import DataError
from pipeline.params import SceneName

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
