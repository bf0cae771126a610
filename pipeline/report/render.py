"""The report's two pages: the HTML file (a template filled by section builders) and the
Markdown summary."""

from __future__ import annotations

import html
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pipeline.analysis.advice import Advice
from pipeline.analysis.artifacts import (
    CoverageVerdict,
    LayerRow,
    MetricsDocument,
    RemedyRecheck,
    StabilityRecord,
)
from pipeline.analysis.remedy_artifacts import RemedyVerdict
from pipeline.data.curation_summary import CurationSummary
from pipeline.layout import Layout
from pipeline.report import actions, backends, charts, curation, search16, sections, verdict
from pipeline.report.actions import UnusedFile

# evaluate.simulation, in words
_ARITHMETIC = {
    "htp": "with the QNN HTP's fixed-point Conv and Add arithmetic",
    "reference": "with exact rounding (backend-neutral)",
}

TEMPLATE = "template.html"


@dataclass(frozen=True)
class ReportInputs:
    """What the report stage reads, as loaded from the earlier stages' outputs."""

    layout: Layout  # where the paths the verdict names live
    metrics: MetricsDocument  # out/evaluate/metrics.json
    layers: Mapping[str, Sequence[LayerRow]]  # out/evaluate/layers.json
    calibration: Mapping[str, int]  # calibration images per scene
    curation: CurationSummary | None = None  # out/curate/summary.json
    advice: Sequence[Advice] = ()  # out/evaluate/advice.json
    remedies: Mapping[str, RemedyVerdict] | None = None  # out/remedies/remedies.json
    stability: Mapping[str, StabilityRecord] | None = None  # out/stability/stability.json
    coverage: Mapping[str, Mapping[str, CoverageVerdict]] | None = None  # out/coverage/...
    remedies_recheck: RemedyRecheck | None = None  # out/remedies/recheck.json
    # out/compile/manifest.json: the compile stage writes it as a plain dict (no model yet)
    compiled: Mapping[str, Any] | None = None
    unused_files: Sequence[UnusedFile] = ()  # manifest rows whose status is not "ok"
    files: int = 0  # every file ingest saw


def _template() -> string.Template:
    text = resources.files("pipeline.report").joinpath(TEMPLATE).read_text(encoding="utf-8")
    return string.Template(text)


def _failing(metrics: MetricsDocument) -> list[str]:
    return [s for s, m in sorted(metrics.scenes.items()) if not m.gate.passed]


def _outputs(metrics: MetricsDocument) -> set[str]:
    return {o for m in metrics.scenes.values() for o in m.outputs}


def _sqnr_gate(metrics: MetricsDocument) -> float | None:
    bounds = {b for m in metrics.scenes.values() if (b := m.gate.sqnr_min_db) is not None}
    return max(bounds) if bounds else None


def render_html(title: str, inputs: ReportInputs, worst_n: int) -> str:
    """The whole report: ``template.html`` filled with one block per section."""
    metrics, scenes, info = inputs.metrics, inputs.metrics.scenes, inputs.metrics.run
    failing = _failing(metrics)
    if inputs.remedies:
        ship = verdict.ship(inputs.remedies, inputs.layout, inputs.compiled)
        ship_html = actions.ship_box(ship, len(inputs.remedies))
        steps = verdict.next_steps(failing, inputs.remedies, inputs.stability)
    else:
        ship_html = (
            f"<p>Remedies not evaluated; the quantize stage's encodings "
            f"<code>{inputs.layout.quantize.encodings}</code> pass "
            f"{len(scenes) - len(failing)} of {len(scenes)} scenes.</p>"
        )
        steps = []
    first_scene: Sequence[LayerRow] = next(iter(sorted(inputs.layers.items())), ("", []))[1]
    found = metrics.backends or {}
    return _template().substitute(
        title=html.escape(title),
        model=html.escape(info.model),
        model_sha256=info.model_sha256,
        backend=html.escape(info.backend),
        activations=html.escape(info.activations),
        weights=html.escape(info.weights),
        bias_bitwidth=info.bias_bitwidth,
        sqnr_signal=html.escape(info.sqnr_signal),
        simulation=html.escape(_ARITHMETIC.get(info.simulation, info.simulation)),
        verdict=ship_html,
        next_steps=actions.steps_list(steps, len(failing)),
        per_scene=sections.per_scene(scenes),
        backends=backends.section(found, inputs.remedies_recheck)
        + backends.compiled(inputs.compiled, inputs.layout),
        coverage=actions.coverage(inputs.coverage),
        quarantined=actions.quarantined(inputs.unused_files, inputs.files),
        remedies_chart=charts.remedies_chart(inputs.remedies or {}),
        remedies=sections.remedies(inputs.remedies, scenes),
        search16=search16.section(inputs.remedies, scenes),
        faces=sections.faces(scenes),
        curation=curation.section(inputs.curation),
        calibration=sections.calibration_set(inputs.calibration),
        chart=charts.sqnr_chart(inputs.layers, _sqnr_gate(metrics)),
        worst_layers=sections.worst_layers(inputs.layers, worst_n),
        sensitivity=sections.sensitivity(scenes),
        stability=sections.stability(inputs.stability),
        advice=actions.readiness(inputs.advice, first_scene, _outputs(metrics)),
    )


def render_markdown(title: str, metrics: MetricsDocument, ship: verdict.Ship | None = None) -> str:
    lines = [f"# {title}", ""]
    if ship is not None and ship.remedy is not None:
        where = f"`{ship.encodings}`" if ship.encodings is not None else "(encodings not written)"
        lines += [
            f"**Ship {ship.remedy}** for the car: {where}; passes "
            f"{len(ship.passing)} of {len(ship.passing) + len(ship.failing)} scenes "
            f"({ship.cost}).",
            "",
        ]
        lines += [f"- context binary, {t}: `{b}`" for t, bs in ship.binaries.items() for b in bs]
        lines += [""] if ship.binaries else []
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
    for s, m in sorted(metrics.scenes.items()):
        faces = m.faces
        miss = f"{faces.missed} of {faces.float_faces}" if faces is not None else "n/a"
        lines.append(
            f"| {s} | {m.images} | {m.output_sqnr_db:.2f} | {m.output_cosine:.6f} | "
            f"{miss} | {m.worst_layer} | {m.worst_layer_blame_sqnr_db:.2f} | "
            f"{'pass' if m.gate.passed else 'FAIL'} |"
        )
    lines += backends.markdown(metrics.backends or {})
    info = metrics.run
    lines += [
        "",
        f"Model sha256 `{info.model_sha256}`, backend `{info.backend}` "
        f"({_ARITHMETIC.get(info.simulation, info.simulation)}), "
        f"activations {info.activations}, weights {info.weights}.",
    ]
    return "\n".join(lines) + "\n"
