"""The report's charts: inline SVG written by hand, deterministic to the byte, no network.

Every chart has axis titles with units, a legend, a ``<title>`` on every point (browsers show it
on hover) and the gate drawn as a dashed line where the chart's quantity has one.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pipeline.analysis.artifacts import LayerRow
from pipeline.analysis.remedy_artifacts import RemedyVerdict

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
GATE_COLOR = "#444"


@dataclass(frozen=True)
class Frame:
    """A plot area inside a ``width`` x ``height`` SVG: data (x, y) -> pixels."""

    width: int
    height: int
    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float
    left: int = 64
    right: int = 16
    top: int = 30
    bottom: int = 86

    def sx(self, x: float) -> float:
        span = (self.x_hi - self.x_lo) or 1.0
        return self.left + (self.width - self.left - self.right) * (x - self.x_lo) / span

    def sy(self, y: float) -> float:
        span = (self.y_hi - self.y_lo) or 1.0
        return self.top + (self.height - self.top - self.bottom) * (1 - (y - self.y_lo) / span)

    def open(self, label: str) -> str:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
            f'height="{self.height}" role="img" aria-label="{html.escape(label)}" '
            'font-family="system-ui, sans-serif">'
        )

    def y_axis(
        self, ticks: Sequence[float], title: str, label: Callable[[float], str] = "{:g}".format
    ) -> str:
        parts = []
        for y in ticks:
            py = self.sy(y)
            parts.append(
                f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{py:.1f}" '
                f'y2="{py:.1f}" stroke="#e4e4e4"/>'
                f'<text x="{self.left - 6}" y="{py + 4:.1f}" font-size="11" '
                f'text-anchor="end">{label(y)}</text>'
            )
        mid = (self.top + self.height - self.bottom) / 2
        parts.append(
            f'<text transform="translate(14,{mid:.1f}) rotate(-90)" font-size="12" '
            f'text-anchor="middle">{html.escape(title)}</text>'
        )
        return "".join(parts)

    def x_title(self, title: str) -> str:
        x = (self.left + self.width - self.right) / 2
        return (
            f'<text x="{x:.1f}" y="{self.height - 6}" font-size="12" '
            f'text-anchor="middle">{html.escape(title)}</text>'
        )

    def x_label(self, x: float, label: str) -> str:
        """A tick label under the plot, turned 60 degrees so long layer names fit."""
        px, py = self.sx(x), self.height - self.bottom + 12
        return (
            f'<text transform="translate({px:.1f},{py}) rotate(-60)" font-size="10" '
            f'text-anchor="end">{html.escape(label)}</text>'
        )

    def gate(self, y: float, label: str) -> str:
        py = self.sy(y)
        return (
            f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{py:.1f}" y2="{py:.1f}" '
            f'stroke="{GATE_COLOR}" stroke-width="1.5" stroke-dasharray="6 4"/>'
            f'<text x="{self.width - self.right - 4}" y="{py - 5:.1f}" font-size="11" '
            f'text-anchor="end" fill="{GATE_COLOR}">{html.escape(label)}</text>'
        )

    def legend(self, names: Sequence[str]) -> str:
        return "".join(
            f'<rect x="{self.left + 110 * i}" y="8" width="10" height="10" '
            f'fill="{COLORS[i % len(COLORS)]}"/><text x="{self.left + 14 + 110 * i}" y="17" '
            f'font-size="12">{html.escape(n)}</text>'
            for i, n in enumerate(names)
        )


def _ticks(lo: float, hi: float, step: float) -> list[float]:
    n = round((hi - lo) / step)
    return [round(lo + i * step, 10) for i in range(n + 1)]


def sqnr_chart(
    layer_rows: Mapping[str, Sequence[LayerRow]],
    gate_db: float | None = None,
    width: int = 960,
    height: int = 360,
) -> str:
    """Accumulated SQNR per layer in topological order, one line per scene; the model input is
    left out (it scores hundreds of dB and would flatten the curves)."""
    series = {
        s: [
            (r.layer_index, r.sqnr_db, r.layer, r.op_type)
            for r in rows
            if not r.is_input and math.isfinite(r.sqnr_db)
        ]
        for s, rows in sorted(layer_rows.items())
    }
    pts = [p for s in series.values() for p in s]
    if not pts:
        return "<p>No layers to chart.</p>"
    ys = [p[1] for p in pts] + ([gate_db] if gate_db is not None else [])
    y_lo, y_hi = math.floor(min(ys) / 5) * 5, math.ceil(max(ys) / 5) * 5
    y_hi = y_hi if y_hi > y_lo else y_lo + 5
    xs = sorted({p[0] for p in pts})
    f = Frame(width, height, min(xs), max(xs), y_lo, y_hi)
    step = 5 if y_hi - y_lo <= 60 else 10
    parts = [f.open("accumulated SQNR per layer, one line per scene")]
    parts.append(f.y_axis(_ticks(y_lo, y_hi, step), "accumulated SQNR (dB, higher is better)"))
    names = {p[0]: p[2] for p in pts}
    every = max(1, math.ceil(len(xs) / 40))  # at most about 40 names under the axis
    parts.extend(f.x_label(x, names[x]) for x in xs[::every])
    parts.append(
        f.x_title("layer (kept tensors in topological order; hover a point for layer, op, dB)")
    )
    if gate_db is not None:
        parts.append(f.gate(gate_db, f"gate: SQNR ≥ {gate_db:g} dB"))
    for i, (scene, s) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{f.sx(x):.1f},{f.sy(y):.1f}" for x, y, _, _ in s)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        parts.extend(
            f'<circle cx="{f.sx(x):.1f}" cy="{f.sy(y):.1f}" r="2.5" fill="{color}">'
            f"<title>{html.escape(scene)}: layer {html.escape(name)} ({html.escape(op)}), "
            f"{y:.2f} dB</title></circle>"
            for x, y, name, op in s
        )
    parts.append(f.legend(list(series)))
    parts.append("</svg>")
    return "".join(parts)


FLOOR = 1e-5  # 1 - cosine below this is drawn at it (log scale)


def _distance(cosine: float) -> float:
    return math.log10(max(1.0 - cosine, FLOOR))


def remedies_chart(
    remedies: Mapping[str, RemedyVerdict], width: int = 960, height: int = 340
) -> str:
    """Every remedy's output cosine distance (1 - cosine, log scale, lower is better), one
    marker per scene, with each scene's cosine gate as a dashed line. On a linear cosine axis
    0.99 and 0.998 would sit on top of each other."""
    scenes = sorted(remedies)
    if not scenes:
        return ""
    order: list[str] = []
    for s in scenes:
        order += [r.remedy for r in remedies[s].remedies if r.remedy not in order]
    values = [_distance(r.output_cosine) for s in scenes for r in remedies[s].remedies]
    gates = {s: remedies[s].gate.cosine_min for s in scenes}
    bounds = sorted({g for g in gates.values() if g is not None})
    ys = values + [_distance(g) for g in bounds]
    y_lo, y_hi = math.floor(min(ys)), max(0, math.ceil(max(ys)))
    f = Frame(width, height, -0.5, len(order) - 0.5, y_lo, y_hi, bottom=70)
    parts = [f.open("output cosine distance per remedy and scene, with the gate")]
    parts.append(
        f.y_axis(
            [float(k) for k in range(y_lo, y_hi + 1)],
            "1 − output cosine (log)",
            lambda k: f"{10**k:g}",
        )
    )
    parts.extend(f.x_label(i, name) for i, name in enumerate(order))
    parts.append(
        f.x_title("remedy (cheapest first, as the remedies stage tries them); lower is better")
    )
    for g in bounds:
        who = [s for s in scenes if gates[s] == g]
        label = "gate" if len(who) == len(scenes) else f"gate of {', '.join(who)}"
        parts.append(f.gate(_distance(g), f"{label}: cosine ≥ {g:g}"))
    width_step = 0.5 / len(scenes)
    for i, s in enumerate(scenes):
        color = COLORS[i % len(COLORS)]
        for r in remedies[s].remedies:
            x = order.index(r.remedy) - 0.25 + width_step * (i + 0.5)
            cos = r.output_cosine
            verdict = "passes" if r.passes_gate else "fails"
            filled = color if r.passes_gate else "white"
            parts.append(
                f'<circle cx="{f.sx(x):.1f}" cy="{f.sy(_distance(cos)):.1f}" r="5" '
                f'fill="{filled}" stroke="{color}" stroke-width="2"><title>{html.escape(s)}: '
                f"{html.escape(r.remedy)}, cosine {cos:.4f}, {verdict} its gate</title></circle>"
            )
    parts.append(f.legend(scenes))
    parts.append(
        f'<text x="{width - 16}" y="17" font-size="11" text-anchor="end">filled: passes its '
        "gate; hollow: fails</text>"
    )
    parts.append("</svg>")
    return "".join(parts)
