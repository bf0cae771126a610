"""The report's charts: inline SVG written by hand, deterministic to the byte, no network."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def sqnr_chart(
    layer_rows: Mapping[str, Sequence[Mapping[str, Any]]], width: int = 900, height: int = 300
) -> str:
    """Per-layer SQNR, one polyline per scene, as inline SVG."""
    pad_l, pad_b, pad_t = 48, 28, 12
    series = {
        s: [
            (int(r["layer_index"]), float(r["sqnr_db"]))
            for r in rows
            if r["op_type"] != "Input" and math.isfinite(float(r["sqnr_db"]))
        ]
        for s, rows in layer_rows.items()
    }
    pts = [p for s in series.values() for p in s]
    if not pts:
        return "<p>No layers to chart.</p>"
    x_max = max(p[0] for p in pts) or 1
    y_lo = math.floor(min(p[1] for p in pts) / 5) * 5
    y_hi = math.ceil(max(p[1] for p in pts) / 5) * 5 or 5
    y_hi = y_hi if y_hi > y_lo else y_lo + 5

    def sx(x: float) -> float:
        return pad_l + (width - pad_l - 10) * x / x_max

    def sy(y: float) -> float:
        return pad_t + (height - pad_t - pad_b) * (1 - (y - y_lo) / (y_hi - y_lo))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="per-layer SQNR">'
    ]
    for y in range(int(y_lo), int(y_hi) + 1, 5):
        parts.append(
            f'<line x1="{pad_l}" x2="{width - 10}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
            'stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{pad_l - 6}" y="{sy(y) + 4:.1f}" font-size="11" text-anchor="end">{y}</text>'
        )
    parts.append(
        f'<text x="{width / 2}" y="{height - 4}" font-size="11" text-anchor="middle">'
        "layer index (kept tensors, topological order)</text>"
    )
    for i, (scene, s) in enumerate(sorted(series.items())):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        parts.append(
            f'<text x="{pad_l + 8 + 110 * i}" y="{pad_t + 12}" font-size="12" '
            f'fill="{color}">{html.escape(scene)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
