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
