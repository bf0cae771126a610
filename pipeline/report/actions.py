"""The sections that say what to do: the verdict, next steps, coverage, quarantined files and
QNN readiness ranked by impact."""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.analysis.advice import Advice
from pipeline.analysis.artifacts import CoverageVerdict, LayerRow
from pipeline.report import verdict
from pipeline.report.numbers import percent
from pipeline.report.tables import table

CHANNEL_BLOCK = 32  # HTP vector units work on 32-channel blocks (pipeline/analysis/advice.py)


@dataclass(frozen=True)
class UnusedFile:
    """A row of the ingest manifest whose status is not ``ok``."""

    path: str
    status: str
    reason: str


def ship_box(s: verdict.Ship, scenes: int) -> str:
    """The one verdict: what to ship, where its encodings are, why, and what it costs."""
    where = (
        f"<code>{html.escape(str(s.encodings))}</code>"
        if s.encodings is not None
        else "not written yet (the remedies stage writes a configuration's encodings only for "
        "a scene that chose it)"
    )
    passing = ", ".join(s.passing) or "none"
    if s.remedy is not None:
        qdq = f", QDQ model <code>{html.escape(str(s.qdq_model))}</code>" if s.qdq_model else ""
        ctx = "".join(
            f", context binary ({html.escape(t)}) <code>{html.escape(b.as_posix())}</code>"
            for t, bs in s.binaries.items()
            for b in bs
        )
        head = f"Ship <b>{html.escape(s.remedy)}</b> for the car: encodings {where}{qdq}{ctx}."
        why = f"Passes {len(s.passing)} of {scenes} scenes ({html.escape(passing)})."
    elif s.best is not None:
        head = "<b>Nothing ships yet</b>: no single configuration passes every scene."
        why = (
            f"The closest is <b>{html.escape(s.best)}</b> (encodings {where}): passes "
            f"{len(s.passing)} of {scenes} scenes ({html.escape(passing)}); fails "
            f"{html.escape(', '.join(s.failing))}. See the next steps."
        )
    else:
        return '<div class="verdict fail"><p><b>No remedies measured.</b></p></div>'
    cls = "pass" if s.remedy is not None else "fail"
    return (
        f'<div class="verdict {cls}"><p class="ship">{head}</p><p>{why} '
        f"Cost: {html.escape(s.cost)}.</p></div>"
    )


def steps_list(steps: Sequence[verdict.Step], failing_now: int) -> str:
    if not steps:
        return "<p>Every scene passes its gate with the quantize stage's encodings.</p>"
    items = "".join(
        f"<li><b>{html.escape(s.scene)}</b>: {html.escape(s.action)} "
        f'<span class="why">({html.escape(s.evidence)})</span></li>'
        for s in steps
    )
    return (
        f"<p>{failing_now} scene(s) fail their gate with the quantize stage's encodings. "
        f"Per scene, the cheapest step the measurements support:</p><ul>{items}</ul>"
    )


def coverage(cov: Mapping[str, Mapping[str, CoverageVerdict]] | None) -> str:
    """Per vehicle session and scene: do the current encodings cover it?"""
    if not cov:
        return "<p>No vehicle sessions checked (coverage.json is empty).</p>"
    rows = [
        [session, scene, v.images, v.requantize, v.reason]
        for session, scenes in sorted(cov.items())
        for scene, v in sorted(scenes.items())
    ]
    yes = sum(1 for r in rows if r[3] == "yes")
    lead = (
        f"<p>{yes} of {len(rows)} session scene(s) need new encodings (clipping or SQNR loss "
        "beyond the coverage limits).</p>"
    )
    return lead + table(["session", "scene", "images", "requantize", "reason"], rows)


def quarantined(rows: Sequence[UnusedFile], files: int) -> str:
    """Files ingest did not use, with the reason."""
    if not rows:
        return f"<p>None: all {files} files under datasets/ were used.</p>"
    lead = f"<p>{len(rows)} of {files} files not used; fix or remove them.</p>"
    body = [[r.path, r.status, r.reason] for r in rows]
    return lead + table(["file", "status", "reason"], body)


def _padding(channels: float) -> float:
    c = int(channels)
    return (math.ceil(c / CHANNEL_BLOCK) * CHANNEL_BLOCK - c) / (
        math.ceil(c / CHANNEL_BLOCK) * CHANNEL_BLOCK
    )


def _heads(layer_rows: Sequence[LayerRow], outputs: set[str]) -> set[str]:
    """Layers that are a model output or feed one directly (the next layer in order): their
    channel counts are set by the task."""
    ordered = sorted(layer_rows, key=lambda r: r.layer_index)
    heads = set(outputs)
    for a, b in itertools.pairwise(ordered):
        if b.layer in outputs:
            heads.add(a.layer)
    return heads


def readiness(
    items: Sequence[Advice],
    layer_rows: Sequence[LayerRow],
    outputs: set[str],
) -> str:
    """Advice that calls for an action first, ranked by impact; what needs none on one line."""
    if not items:
        return "<p>Nothing to flag.</p>"
    own = {r.layer: r.blame_sqnr_db for r in layer_rows}
    heads = _heads(layer_rows, outputs)
    keep = [a for a in items if a.kind == "per_channel_spread" and "keep it" in a.message]
    head_items = [a for a in items if a.kind == "channels_not_multiple_of_32" and a.layer in heads]
    grouped = {id(a) for a in keep + head_items}
    act = [a for a in items if id(a) not in grouped and a.kind != "channels_not_multiple_of_32"]
    act.sort(key=lambda a: (own.get(a.layer, math.inf), a.layer))
    rows = [[a.kind, a.layer, _figure(a, own), a.message] for a in act]
    rows += _channel_rows(
        [a for a in items if id(a) not in grouped and a.kind == "channels_not_multiple_of_32"]
    )
    out = [
        "<p>Ranked: accuracy items first, by the layer's own measured SQNR (lowest first); "
        f"then channel counts, grouped by count and ranked by the share of output channels the "
        f"HTP pads to blocks of {CHANNEL_BLOCK} (from the weights' shapes; fieldcal does not "
        "time the device).</p>"
    ]
    if rows:
        out.append(table(["kind", "layers", "figure", "advice"], rows))
    if head_items:
        counts = ", ".join(f"{a.layer} ({int(a.figure)})" for a in head_items)
        out.append(
            f"<p><b>Unavoidable</b>: {len(head_items)} head layer(s) whose channel counts the "
            f"task sets: {html.escape(counts)}. Padding them costs little; nothing to do.</p>"
        )
    if keep:
        layers = ", ".join(a.layer for a in keep)
        out.append(
            f"<p><b>Already right</b>: {len(keep)} weight(s) whose channels differ widely in "
            f"range are quantized per channel, as they should be: {html.escape(layers)}.</p>"
        )
    return "".join(out)


def _channel_rows(items: Sequence[Advice]) -> list[list[Any]]:
    """One row per output channel count, most padding first."""
    by_count: dict[int, list[str]] = {}
    for a in items:
        by_count.setdefault(int(a.figure), []).append(a.layer)
    rows: list[list[Any]] = []
    for c in sorted(by_count, key=lambda c: (-_padding(c), c)):
        layers = by_count[c]
        pad = _padding(c)
        advice = (
            f"{len(layers)} convolution(s) with {c} output channels: the HTP pads each to "
            f"{math.ceil(c / CHANNEL_BLOCK) * CHANNEL_BLOCK}. Round the width to a multiple of "
            f"{CHANNEL_BLOCK} when the model is next trained."
            if pad
            else f"{len(layers)} convolution(s) whose input channels (only) are not a multiple of "
            f"{CHANNEL_BLOCK}: fixed by fixing the layer that feeds them."
        )
        rows.append(
            [
                "channels_not_multiple_of_32",
                ", ".join(layers),
                f"{c} out, {percent(pad)} padding",
                advice,
            ]
        )
    return rows


def _figure(a: Advice, own: Mapping[str, float]) -> str:
    if a.kind == "channels_not_multiple_of_32":
        return f"{int(a.figure)} channels out, {percent(_padding(a.figure))} padding"
    if a.kind in ("per_channel_spread", "long_tail"):
        extra = f"; own SQNR {own[a.layer]:.1f} dB" if a.layer in own else ""
        return f"{percent(float(a.figure))}{extra}"
    return f"{a.figure:g}"
