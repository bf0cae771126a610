"""The report's sections: each builder turns one stage output into one block of HTML."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.report.numbers import TOO_FEW, percent, rate
from pipeline.report.tables import table
from pipeline.report.verdict import settled, unsettled_text

Scenes = Mapping[str, Mapping[str, Any]]
LayerRows = Mapping[str, Sequence[Mapping[str, Any]]]


def per_scene(scenes: Scenes) -> str:
    """One row per scene: headline metrics, the worst layer, the gate."""
    rows = [
        [
            s,
            m["images"],
            m["output_sqnr_db"],
            m["output_cosine"],
            m["worst_layer"],
            m.get("worst_layer_own_sqnr_db", "n/a"),
            m["worst_layer_sqnr_db"],
            percent(m["worst_layer_clip_rate"]),
            m["worst_layer_dominant"],
            "pass" if m["gate"]["passed"] else "FAIL",
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
            f["float_faces"],
            f["quantized_faces"],
            rate(f["missed"], f["float_faces"], "faces missed"),
            f["spurious"],
            f["mean_iou"] if f["mean_iou"] is not None else "n/a",
            ", ".join(f["images_with_miss"]) or "-",
        ]
        for s, m in sorted(scenes.items())
        if (f := m.get("faces")) is not None
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
        inner = [r for r in rows if r["op_type"] != "Input"]
        key = "sqnr_layerwise_db" if all("sqnr_layerwise_db" in r for r in inner) else "sqnr_db"
        worst = sorted(inner, key=lambda r: (r[key], r["layer"]))[:worst_n]
        cells = [
            [
                r["layer"],
                r["op_type"],
                r.get("sqnr_layerwise_db", "n/a"),
                r["sqnr_db"],
                r["cosine"],
                percent(r["clip_rate"]),
                r.get("sqnr_weights_only_db", "n/a"),
                r.get("sqnr_activations_only_db", "n/a"),
                r.get("dominant", "n/a"),
                r["worst_image"],
            ]
            for r in worst
        ]
        sections.append(f"<h3>{html.escape(scene)}</h3>" + table(headers, cells))
    return "".join(sections)


def sensitivity(scenes: Scenes) -> str:
    rows = [
        [s, layer, v.get("enabled_only", "n/a"), v.get("disabled", "n/a"), m["output_sqnr_db"]]
        for s, m in sorted(scenes.items())
        for layer, v in m.get("sensitivity", {}).items()
    ]
    if not rows:
        return "<p>Sensitivity sweep off (evaluate.sensitivity_layers: 0).</p>"
    return (
        "<p>Headline output SQNR with only this layer quantized (enabled only) and with all "
        "but this layer quantized (disabled), against all quantized.</p>"
        + table(["scene", "layer", "enabled only dB", "disabled dB", "all quantized dB"], rows)
    )


def remedies(remedies: Mapping[str, Any] | None, scenes: Scenes) -> str:
    """Every remedy tried per scene, the chosen one marked; misses counted against the float
    model's faces in the scene's evaluation images."""
    if not remedies:
        return "<p>Remedies not evaluated.</p>"

    def misses(scene: str, r: Mapping[str, Any]) -> str:
        f = scenes.get(scene, {}).get("faces")
        if r["face_miss_rate"] is None or f is None:
            return "n/a"
        n = int(f["float_faces"])
        return f"{round(r['face_miss_rate'] * n)} of {n}" if n else "no faces"

    rows = [
        [
            scene,
            r["remedy"],
            r["output_sqnr_db"],
            r["output_cosine"],
            misses(scene, r),
            "pass" if r["passes_gate"] else "fail",
            "chosen" if r["remedy"] == v["chosen"] else "",
            r["cost"],
        ]
        for scene, v in sorted(remedies.items())
        for r in v["remedies"]
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


def stability(stability: Mapping[str, Any] | None) -> str:
    """Per group, whether its calibration set has settled, then each curve point."""
    if not stability:
        return "<p>Stability not computed.</p>"
    verdicts = []
    for g, v in sorted(stability.items()):
        if settled(v):
            text = f"enough: {v['enough']} of {v['images']} images move scales less than " + (
                f"{100 * float(v['tolerance']):.0f} %"
            )
        else:
            text = unsettled_text(v)
        verdicts.append(f"<li><b>{html.escape(g)}</b>: {html.escape(text)}</li>")
    rows = [
        [
            g,
            pt["images"],
            v["images"],
            percent(pt["p95_scale_change"]),
            pt["output_sqnr_db"] if pt["output_sqnr_db"] is not None else "n/a",
        ]
        for g, v in sorted(stability.items())
        for pt in v["curve"]
    ]
    headers = ["group", "subset size", "of images", "p95 scale change", "output SQNR dB"]
    return f"<ul>{''.join(verdicts)}</ul>" + table(headers, rows)
