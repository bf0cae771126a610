"""The report's two pages: the HTML file (a template filled by section builders) and the
Markdown summary."""

from __future__ import annotations

import html
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pipeline.layout import Layout
from pipeline.report import actions, backends, charts, sections, verdict

TEMPLATE = "template.html"


@dataclass(frozen=True)
class ReportInputs:
    """What the report stage reads, as loaded from the earlier stages' outputs."""

    layout: Layout  # where the paths the verdict names live
    metrics: Mapping[str, Any]  # out/evaluate/metrics.json
    layers: Mapping[str, Sequence[Mapping[str, Any]]]  # out/evaluate/layers.json
    calibration: Mapping[str, int]  # calibration images per scene
    advice: Sequence[Mapping[str, Any]] = ()
    remedies: Mapping[str, Any] | None = None
    stability: Mapping[str, Any] | None = None
    coverage: Mapping[str, Any] | None = None
    remedies_recheck: Mapping[str, Any] | None = None  # out/remedies/recheck.json
    compiled: Mapping[str, Any] | None = None  # out/compile/manifest.json
    unused_files: Sequence[Mapping[str, Any]] = ()  # manifest rows whose status is not "ok"
    files: int = 0  # every file ingest saw


def _template() -> string.Template:
    text = resources.files("pipeline.report").joinpath(TEMPLATE).read_text(encoding="utf-8")
    return string.Template(text)


def _failing(metrics: Mapping[str, Any]) -> list[str]:
    return [s for s, m in sorted(metrics["scenes"].items()) if not m["gate"]["passed"]]


def _outputs(metrics: Mapping[str, Any]) -> set[str]:
    return {o for m in metrics["scenes"].values() for o in m.get("outputs", {})}


def _sqnr_gate(metrics: Mapping[str, Any]) -> float | None:
    bounds = {m["gate"].get("sqnr_min_db") for m in metrics["scenes"].values()}
    bounds.discard(None)
    return max(bounds) if bounds else None


def render_html(title: str, inputs: ReportInputs, worst_n: int) -> str:
    """The whole report: ``template.html`` filled with one block per section."""
    metrics, scenes, info = inputs.metrics, inputs.metrics["scenes"], inputs.metrics["run"]
    failing = _failing(metrics)
    if inputs.remedies:
        ship = verdict.ship(inputs.remedies, inputs.layout)
        ship_html = actions.ship_box(ship, len(inputs.remedies))
        steps = verdict.next_steps(failing, inputs.remedies, inputs.stability)
    else:
        ship_html = (
            f"<p>Remedies not evaluated; the quantize stage's encodings "
            f"<code>{inputs.layout.quantize.encodings}</code> pass "
            f"{len(scenes) - len(failing)} of {len(scenes)} scenes.</p>"
        )
        steps = []
    first_scene = next(iter(sorted(inputs.layers.items())), ("", []))[1]
    return _template().substitute(
        title=html.escape(title),
        model=html.escape(info["model"]),
        model_sha256=info["model_sha256"],
        backend=html.escape(info["backend"]),
        activations=html.escape(info["activations"]),
        weights=html.escape(info["weights"]),
        bias_bitwidth=info["bias_bitwidth"],
        sqnr_signal=html.escape(info["sqnr_signal"]),
        verdict=ship_html,
        next_steps=actions.steps_list(steps, len(failing)),
        per_scene=sections.per_scene(scenes),
        backends=backends.section(metrics, inputs.remedies_recheck)
        + backends.compiled(inputs.compiled, inputs.layout),
        coverage=actions.coverage(inputs.coverage),
        quarantined=actions.quarantined(inputs.unused_files, inputs.files),
        remedies_chart=charts.remedies_chart(inputs.remedies or {}),
        remedies=sections.remedies(inputs.remedies, scenes),
        faces=sections.faces(scenes),
        calibration=sections.calibration_set(inputs.calibration),
        chart=charts.sqnr_chart(inputs.layers, _sqnr_gate(metrics)),
        worst_layers=sections.worst_layers(inputs.layers, worst_n),
        sensitivity=sections.sensitivity(scenes),
        stability=sections.stability(inputs.stability),
        advice=actions.readiness(inputs.advice, first_scene, _outputs(metrics)),
    )


def render_markdown(
    title: str, metrics: Mapping[str, Any], ship: verdict.Ship | None = None
) -> str:
    lines = [f"# {title}", ""]
    if ship is not None and ship.remedy is not None:
        where = f"`{ship.encodings}`" if ship.encodings is not None else "(encodings not written)"
        lines += [
            f"**Ship {ship.remedy}** for the car: {where}; passes "
            f"{len(ship.passing)} of {len(ship.passing) + len(ship.failing)} scenes "
            f"({ship.cost}).",
            "",
        ]
    elif ship is not None:
        lines += [
            f"**Nothing ships yet**: no single configuration passes every scene; closest "
            f"{ship.best} ({len(ship.passing)} pass, failing: {', '.join(ship.failing)}).",
            "",
        ]
    lines += [
        "| scene | images | output SQNR dB | output cosine | faces missed | worst layer "
        "| its own SQNR dB | gate |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for s, m in sorted(metrics["scenes"].items()):
        faces = m.get("faces")
        miss = f"{faces['missed']} of {faces['float_faces']}" if faces else "n/a"
        own = m.get("worst_layer_own_sqnr_db", m["worst_layer_sqnr_db"])
        lines.append(
            f"| {s} | {m['images']} | {m['output_sqnr_db']:.2f} | {m['output_cosine']:.6f} | "
            f"{miss} | {m['worst_layer']} | {own:.2f} | "
            f"{'pass' if m['gate']['passed'] else 'FAIL'} |"
        )
    lines += backends.markdown(metrics)
    info = metrics["run"]
    lines += [
        "",
        f"Model sha256 `{info['model_sha256']}`, backend `{info['backend']}`, "
        f"activations {info['activations']}, weights {info['weights']}.",
    ]
    return "\n".join(lines) + "\n"
