"""The report's sections: each builder turns one stage output into one block of HTML."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from pipeline.analysis.artifacts import (
    LayerRow,
    SceneMetrics,
    StabilityRecord,
    settled,
    unsettled_text,
)
from pipeline.analysis.remedy_artifacts import RemedyVerdict
from pipeline.report.numbers import TOO_FEW, percent, rate
from pipeline.report.tables import table

Scenes = Mapping[str, SceneMetrics]
LayerRows = Mapping[str, Sequence[LayerRow]]


def _or_na(v: float | str | None) -> float | str:
    """A value that was not measured (absent from the stage output) shows as ``n/a``."""
    return "n/a" if v is None else v


def _sort_db(r: LayerRow, own: bool) -> float:
    """The worst-layers order: by own (layerwise) SQNR when every row has it, else by the
    accumulated SQNR."""
    return r.sqnr_layerwise_db if own and r.sqnr_layerwise_db is not None else r.sqnr_db


def per_scene(scenes: Scenes) -> str:
    """One row per scene: headline metrics, the worst layer, the gate."""
    rows = [
        [
            s,
            m.images,
            m.output_sqnr_db,
            m.output_cosine,
            m.worst_layer,
            _or_na(m.worst_layer_own_sqnr_db),
            m.worst_layer_sqnr_db,
            percent(m.worst_layer_clip_rate),
            m.worst_layer_dominant,
            "pass" if m.gate.passed else "FAIL",
        ]
        for s, m in sorted(scenes.items())
    ]
    headers = [
        "scene",
        "images",
        "output SQNR dB",
        "output cosine",
        "worst layer",
        "its own SQNR dB",
        "its accumulated SQNR dB",
        "its clip rate",
        "dominant",
        "gate",
    ]
    return table(headers, rows)


def faces(scenes: Scenes) -> str:
    """Float vs quantized detections per scene: misses as a count with a Wilson interval."""
    rows = [
        [
            s,
            f.float_faces,
            f.quantized_faces,
            rate(f.missed, f.float_faces, "faces missed"),
            f.spurious,
            _or_na(f.mean_iou),
            ", ".join(f.images_with_miss) or "-",
        ]
        for s, m in sorted(scenes.items())
        if (f := m.faces) is not None
    ]
    if not rows:
        return "<p>No task decoder for this model: output-level metrics only.</p>"
    headers = [
        "scene",
        "float faces",
        "quantized faces",
        "missed (of the float model's faces)",
        "spurious",
        "mean IoU",
        "images with a miss",
    ]
    return (
        f"<p>Under {TOO_FEW} faces a scene's miss rate is shown but too few to judge; the "
        "interval is Wilson's 95 % score interval.</p>" + table(headers, rows)
    )


def calibration_set(calibration: Mapping[str, int]) -> str:
    return table(["scene", "images"], sorted(calibration.items()))


def worst_layers(layer_rows: LayerRows, worst_n: int) -> str:
    """Per scene, the ``worst_n`` layers by their own (layerwise) error when measured."""
    sections = []
    headers = [
        "layer",
        "op",
        "own SQNR dB",
        "accumulated SQNR dB",
        "cosine",
        "clip rate",
        "W-only dB",
        "A-only dB",
        "dominant",
        "worst image",
    ]
    for scene, rows in sorted(layer_rows.items()):
        inner = [r for r in rows if not r.is_input]
        own = all(r.sqnr_layerwise_db is not None for r in inner)
        worst = sorted(inner, key=lambda r: (_sort_db(r, own), r.layer))[:worst_n]
        cells = [
            [
                r.layer,
                r.op_type,
                _or_na(r.sqnr_layerwise_db),
                r.sqnr_db,
                r.cosine,
                percent(r.clip_rate),
                _or_na(r.sqnr_weights_only_db),
                _or_na(r.sqnr_activations_only_db),
                _or_na(r.dominant),
                r.worst_image,
            ]
            for r in worst
        ]
        sections.append(f"<h3>{html.escape(scene)}</h3>" + table(headers, cells))
    return "".join(sections)


def sensitivity(scenes: Scenes) -> str:
    rows = [
        [s, layer, v.enabled_only, v.disabled, m.output_sqnr_db]
        for s, m in sorted(scenes.items())
        for layer, v in (m.sensitivity or {}).items()
    ]
    if not rows:
        return "<p>Sensitivity sweep off (evaluate.sensitivity_layers: 0).</p>"
    return (
        "<p>Headline output SQNR with only this layer quantized (enabled only) and with all "
        "but this layer quantized (disabled), against all quantized.</p>"
        + table(["scene", "layer", "enabled only dB", "disabled dB", "all quantized dB"], rows)
    )


def faces_missed(scene: SceneMetrics | None, miss_rate: float | None) -> str:
    """A miss rate measured on a scene's evaluation images as a count of the float model's
    faces there: "1 of 16"."""
    f = scene.faces if scene is not None else None
    if miss_rate is None or f is None:
        return "n/a"
    n = f.float_faces
    return f"{round(miss_rate * n)} of {n}" if n else "no faces"


def remedies(remedies: Mapping[str, RemedyVerdict] | None, scenes: Scenes) -> str:
    """Every remedy tried per scene, the chosen one marked; misses counted against the float
    model's faces in the scene's evaluation images."""
    if not remedies:
        return "<p>Remedies not evaluated.</p>"
    rows = [
        [
            scene,
            r.remedy,
            r.output_sqnr_db,
            r.output_cosine,
            faces_missed(scenes.get(scene), r.face_miss_rate),
            "pass" if r.passes_gate else "fail",
            "chosen" if r.remedy == v.chosen else "",
            r.cost,
        ]
        for scene, v in sorted(remedies.items())
        for r in v.remedies
    ]
    headers = [
        "scene",
        "remedy",
        "output SQNR dB",
        "output cosine",
        "faces missed",
        "gate",
        "chosen",
        "cost",
    ]
    return table(headers, rows)


def stability(stability: Mapping[str, StabilityRecord] | None) -> str:
    """Per group, whether its calibration set has settled, then each curve point."""
    if not stability:
        return "<p>Stability not computed.</p>"
    verdicts = []
    for g, v in sorted(stability.items()):
        if settled(v):
            text = f"enough: {v.enough} of {v.images} images move scales less than " + (
                f"{100 * v.tolerance:.0f} %"
            )
        else:
            text = unsettled_text(v)
        verdicts.append(f"<li><b>{html.escape(g)}</b>: {html.escape(text)}</li>")
    rows = [
        [
            g,
            pt.images,
            v.images,
            percent(pt.p95_scale_change),
            _or_na(pt.output_sqnr_db),
        ]
        for g, v in sorted(stability.items())
        for pt in v.curve
    ]
    headers = ["group", "subset size", "of images", "p95 scale change", "output SQNR dB"]
    return f"<ul>{''.join(verdicts)}</ul>" + table(headers, rows)
