"""The report's Curation section: per scene and source, what each quota took from the curate
stage's summary (``out/curate/summary.json``), and which sources lost picks."""

from __future__ import annotations

import html

from pipeline.data.curation_summary import CurationSummary
from pipeline.report.tables import table

HEADERS = [
    "scene",
    "source",
    "calibration quota took",
    "evaluation quota took",
    "over quota (eligible, not picked)",
    "ineligible (duplicates, excluded)",
]


def _losses(summary: CurationSummary) -> list[str]:
    """ "day: generic lost 2, vehicle lost 2" per scene where a source has over-quota images."""
    lines = []
    for scene, sources in sorted(summary.scenes.items()):
        lost = [f"{s} lost {c.over_quota}" for s, c in sorted(sources.items()) if c.over_quota]
        if lost:
            lines.append(f"<li><b>{html.escape(scene)}</b>: {html.escape(', '.join(lost))}</li>")
    return lines


def section(summary: CurationSummary | None) -> str:
    """A line per scene naming the sources that lost picks, then one row per scene and source
    with the images each quota took."""
    if summary is None:
        return "<p>Curation summary not read.</p>"
    lost = _losses(summary)
    intro = (
        "<p>Sources that lost picks: eligible images that no quota reached, because "
        "better-ranked or more diverse images of the same scene filled it.</p>"
        f"<ul>{''.join(lost)}</ul>"
        if lost
        else "<p>No source lost picks: every eligible image went to a quota.</p>"
    )
    rows = [
        [scene, source, c.calibration, c.evaluation, c.over_quota, c.ineligible]
        for scene, sources in sorted(summary.scenes.items())
        for source, c in sorted(sources.items())
    ]
    if not rows:
        return "<p>Curation picked nothing: the curate summary lists no scene.</p>"
    return intro + table(HEADERS, rows)
