"""Report: one self-contained HTML file (inline SVG, no network) and a short Markdown summary."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        if math.isinf(v) or math.isnan(v):
            return str(v)
        return f"{v:.{digits}f}" if abs(v) < 1e5 else f"{v:.3e}"
    return html.escape(str(v))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
        color = _COLORS[i % len(_COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        parts.append(
            f'<text x="{pad_l + 8 + 110 * i}" y="{pad_t + 12}" font-size="12" '
            f'fill="{color}">{html.escape(scene)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


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
    scenes = metrics["scenes"]
    stability_html = "<p>Stability not computed.</p>"
    if stability:
        stability_html = _table(
            ["group", "images", "enough", "subset size", "p95 scale change", "output SQNR dB"],
            [
                [
                    g,
                    v["images"],
                    v["enough"] if v["enough"] is not None else "not yet",
                    pt["images"],
                    pt["p95_scale_change"],
                    pt["output_sqnr_db"] if pt["output_sqnr_db"] is not None else "n/a",
                ]
                for g, v in sorted(stability.items())
                for pt in v["curve"]
            ],
        )
    remedy_html = "<p>Remedies not evaluated.</p>"
    if remedies:
        remedy_rows = [
            [
                scene,
                r["remedy"],
                r["output_sqnr_db"],
                r["output_cosine"],
                r["face_miss_rate"] if r["face_miss_rate"] is not None else "n/a",
                "pass" if r["passes_gate"] else "fail",
                "chosen" if r["remedy"] == v["chosen"] else "",
                r["cost"],
            ]
            for scene, v in sorted(remedies.items())
            for r in v["remedies"]
        ]
        remedy_html = _table(
            [
                "scene",
                "remedy",
                "output SQNR dB",
                "output cosine",
                "face miss rate",
                "gate",
                "",
                "cost",
            ],
            remedy_rows,
        )
    summary_rows = [
        [
            s,
            m["images"],
            m["output_sqnr_db"],
            m["output_cosine"],
            m["worst_layer"],
            m.get("worst_layer_own_sqnr_db", "n/a"),
            m["worst_layer_sqnr_db"],
            m["worst_layer_clip_rate"],
            m["worst_layer_dominant"],
            "pass" if m["gate"]["passed"] else "FAIL",
        ]
        for s, m in sorted(scenes.items())
    ]
    face_rows = [
        [
            s,
            f["float_faces"],
            f["quantized_faces"],
            f["missed"],
            f["miss_rate"],
            f["spurious"],
            f["mean_iou"] if f["mean_iou"] is not None else "n/a",
            ", ".join(f["images_with_miss"]) or "-",
        ]
        for s, m in sorted(scenes.items())
        if (f := m.get("faces")) is not None
    ]
    sens_rows = [
        [s, layer, v.get("enabled_only", "n/a"), v.get("disabled", "n/a"), m["output_sqnr_db"]]
        for s, m in sorted(scenes.items())
        for layer, v in m.get("sensitivity", {}).items()
    ]
    worst_sections = []
    for scene, rows in sorted(layer_rows.items()):
        inner = [r for r in rows if r["op_type"] != "Input"]
        key = "sqnr_layerwise_db" if all("sqnr_layerwise_db" in r for r in inner) else "sqnr_db"
        worst = sorted(inner, key=lambda r: (r[key], r["layer"]))[:worst_n]
        worst_sections.append(
            f"<h3>{html.escape(scene)}</h3>"
            + _table(
                [
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
                ],
                [
                    [
                        r["layer"],
                        r["op_type"],
                        r.get("sqnr_layerwise_db", "n/a"),
                        r["sqnr_db"],
                        r["cosine"],
                        r["clip_rate"],
                        r.get("sqnr_weights_only_db", "n/a"),
                        r.get("sqnr_activations_only_db", "n/a"),
                        r.get("dominant", "n/a"),
                        r["worst_image"],
                    ]
                    for r in worst
                ],
            )
        )
    info = metrics["run"]
    faces_html = (
        _table(
            [
                "scene",
                "float faces",
                "quantized faces",
                "missed",
                "miss rate",
                "spurious",
                "mean IoU",
                "images with a miss",
            ],
            face_rows,
        )
        if face_rows
        else "<p>No task decoder for this model: output-level metrics only.</p>"
    )
    sens_html = (
        "<p>Headline output SQNR with only this layer quantized (enabled only) and with all "
        "but this layer quantized (disabled), against all quantized.</p>"
        + _table(
            ["scene", "layer", "enabled only dB", "disabled dB", "all quantized dB"], sens_rows
        )
        if sens_rows
        else "<p>Sensitivity sweep off (evaluate.sensitivity_layers: 0).</p>"
    )
    advice_html = (
        _table(
            ["kind", "layer", "figure", "advice"],
            [[a["kind"], a["layer"], a["figure"], a["message"]] for a in advice],
        )
        if advice
        else "<p>Nothing to flag.</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child {{ text-align: left; }}
code {{ background: #f6f6f6; padding: 1px 4px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Model <code>{html.escape(info["model"])}</code> sha256 <code>{info["model_sha256"]}</code>;
backend <b>{html.escape(info["backend"])}</b> (numbers are from this backend's simulation, not
from a device); activations {html.escape(info["activations"])}, weights
{html.escape(info["weights"])}, bias {info["bias_bitwidth"]}-bit; SQNR signal
{html.escape(info["sqnr_signal"])}.</p>
<h2>Per scene</h2>
{
        _table(
            [
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
            ],
            summary_rows,
        )
    }
<h2>Faces: float vs quantized detections</h2>
{faces_html}
<h2>Calibration set</h2>
{_table(["scene", "images"], sorted(calibration.items()))}
<h2>Per-layer SQNR (accumulated, oneshot)</h2>
{sqnr_chart(layer_rows)}
<h2>Worst layers (by their own, layerwise, error)</h2>
{"".join(worst_sections)}
<h2>Sensitivity</h2>
{sens_html}
<h2>Remedies per scene (cheapest passing one chosen)</h2>
{remedy_html}
<h2>How many calibration images are enough</h2>
<p>Seeded subsets of each scene's calibration images against the whole set: the 95th-percentile
relative change of activation scales, and the output SQNR on the scene's evaluation images.
"enough": from that size on, scales move less than the tolerance.</p>
{stability_html}
<h2>QNN readiness</h2>
{advice_html}
</body></html>
"""


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
