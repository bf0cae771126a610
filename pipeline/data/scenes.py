"""Scene tags: the sidecar's word first, otherwise a documented rule over luminance statistics.

The automatic rule (``auto:luma-v1``) reads the image's luminance (ITU-R BT.601 luma, 0-255) on a
thumbnail:

* ``night``     mean luma < 50 (confidence grows as the mean falls);
* ``backlight`` at least 8 % of pixels >= 245 and at least 25 % <= 40 (bright source, dark subject);
* ``day``       everything else.
"""

from __future__ import annotations

from dataclasses import dataclass

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


# Scenes the automatic rule can give: a setting for one of them is never a typo, even before
# the first image of that scene arrives.
AUTO_SCENES = ("backlight", "day", "night")


@dataclass(frozen=True)
class SceneNameCheck:
    """Scene names used in params, judged against the data: ``errors`` for names no image,
    sidecar or rule knows (almost surely typos), ``warnings`` for known scenes with no
    images yet (the setting applies once they arrive)."""

    errors: tuple[str, ...]
    warnings: tuple[str, ...]


def check_scene_names(
    used: dict[str, list[str]], with_images: set[str], declared: set[str]
) -> SceneNameCheck:
    """``used``: where (``curate.calibration``...) -> scene names set there; ``with_images``:
    the scenes of the manifest's ok images; ``declared``: scenes the sidecars name."""
    from difflib import get_close_matches

    known = sorted(with_images | declared | set(AUTO_SCENES))
    errors: list[str] = []
    warnings: list[str] = []
    for where, names in used.items():
        for name in names:
            if name in with_images:
                continue
            if name in declared or name in AUTO_SCENES:
                warnings.append(
                    f"{where}.{name}: no images of scene {name!r} yet; the setting applies "
                    "when they arrive"
                )
                continue
            close = get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            errors.append(
                f"{where}.{name}: unknown scene {name!r}.{hint} Known scenes: {', '.join(known)} "
                "(from the ingested images, the sidecars and the automatic rule)"
            )
    return SceneNameCheck(tuple(errors), tuple(warnings))
