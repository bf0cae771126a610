"""The report's two pages: the HTML file (a template filled by section builders) and the
Markdown summary."""

from __future__ import annotations

import html
import string
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from pipeline.report import charts, sections

TEMPLATE = "template.html"


def _template() -> string.Template:
    text = resources.files("pipeline.report").joinpath(TEMPLATE).read_text(encoding="utf-8")
    return string.Template(text)


def render_html(
    title: str,
    metrics: Mapping[str, Any],
    layer_rows: Mapping[str, Sequence[Mapping[str, Any]]],
    calibration: Mapping[str, int],
    worst_n: int,
    advice: Sequence[Mapping[str, Any]] = (),
    remedies: Mapping[str, Any] | None = None,
    stability: Mapping[str, Any] | None = None,
) -> str:
    """The whole report: ``template.html`` filled with one block per section."""
    scenes = metrics["scenes"]
    info = metrics["run"]
    return _template().substitute(
        title=html.escape(title),
        model=html.escape(info["model"]),
        model_sha256=info["model_sha256"],
        backend=html.escape(info["backend"]),
        activations=html.escape(info["activations"]),
        weights=html.escape(info["weights"]),
        bias_bitwidth=info["bias_bitwidth"],
        sqnr_signal=html.escape(info["sqnr_signal"]),
        per_scene=sections.per_scene(scenes),
        faces=sections.faces(scenes),
        calibration=sections.calibration_set(calibration),
        chart=charts.sqnr_chart(layer_rows),
        worst_layers=sections.worst_layers(layer_rows, worst_n),
        sensitivity=sections.sensitivity(scenes),
        remedies=sections.remedies(remedies),
        stability=sections.stability(stability),
        advice=sections.advice(advice),
    )


def render_markdown(title: str, metrics: Mapping[str, Any]) -> str:
    lines = [
        f"# {title}",
        "",
        "| scene | images | output SQNR dB | output cosine | face miss rate | worst layer "
        "| its own SQNR dB | gate |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for s, m in sorted(metrics["scenes"].items()):
        faces = m.get("faces")
        miss = (
            f"{faces['miss_rate']:.2f} ({faces['missed']}/{faces['float_faces']})"
            if faces
            else "n/a"
        )
        own = m.get("worst_layer_own_sqnr_db", m["worst_layer_sqnr_db"])
        lines.append(
            f"| {s} | {m['images']} | {m['output_sqnr_db']:.2f} | {m['output_cosine']:.6f} | "
            f"{miss} | {m['worst_layer']} | {own:.2f} | "
            f"{'pass' if m['gate']['passed'] else 'FAIL'} |"
        )
    info = metrics["run"]
    lines += [
        "",
        f"Model sha256 `{info['model_sha256']}`, backend `{info['backend']}`, "
        f"activations {info['activations']}, weights {info['weights']}.",
    ]
    return "\n".join(lines) + "\n"
