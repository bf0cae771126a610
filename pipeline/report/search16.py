"""The remedies part's 16-bit search (``search`` and ``search_all_scenes`` of each scene's
:class:`~pipeline.analysis.remedy_artifacts.RemedyVerdict`): what each search found within its
budget, the removal record of every tensor of the set bisection found, and the Pareto front.

The one-configuration-for-all-scenes search is a single search whose record the remedies stage
writes into every scene's verdict; it is shown once, and its scores are the worst scene's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.analysis.artifacts import SceneMetrics
from pipeline.analysis.remedy_artifacts import RemedyVerdict, SearchPoint, SearchRecord
from pipeline.report.numbers import percent
from pipeline.report.sections import faces_missed
from pipeline.report.tables import table

ALL_SCENES = "all scenes (one model)"
FOUND = "16-bit search: the fewest activations at 16 bits that pass"
NAMED = 4  # a set of at most this many tensors is shown by name, a larger one by its count


@dataclass(frozen=True)
class _Searched:
    label: str  # the scene, or ALL_SCENES
    scene: SceneMetrics | None  # whose faces count the miss rates (None: every scene's)
    record: SearchRecord


def _searches(
    remedies: Mapping[str, RemedyVerdict], scenes: Mapping[str, SceneMetrics]
) -> list[_Searched]:
    """Per scene in name order, then the all-scenes search (taken from the first scene)."""
    found = [
        _Searched(s, scenes.get(s), v.search)
        for s, v in sorted(remedies.items())
        if v.search is not None
    ]
    joint = next(
        (
            v.search_all_scenes
            for _, v in sorted(remedies.items())
            if v.search_all_scenes is not None
        ),
        None,
    )
    return found + ([_Searched(ALL_SCENES, None, joint)] if joint is not None else [])


def _tensors(names: Sequence[str]) -> str:
    """ "3: 537, 373, 410"; a larger set by its count only."""
    n = len(names)
    return f"{n}: {', '.join(names)}" if 0 < n <= NAMED else str(n)


def _extra_bytes(record: SearchRecord) -> str:
    """The chosen set's extra activation bytes, from its evaluated point on the front."""
    if record.chosen is None:
        return "-"
    want = set(record.chosen)
    point = next((p for p in record.pareto if set(p.tensors) == want), None)
    return f"{point.extra_bytes:,}" if point is not None else "not on the front"


def _found_set(chosen: Sequence[str] | None) -> str:
    if chosen is None:
        return "none within the budget"
    return _tensors(chosen) if chosen else "none needed"


def _found(searches: Sequence[_Searched]) -> str:
    rows = [
        [
            s.label,
            _found_set(s.record.chosen),
            _extra_bytes(s.record),
            f"{s.record.evaluations} of {s.record.budget}",
            s.record.why,
        ]
        for s in searches
    ]
    headers = [
        "set",
        "16-bit activations found",
        "extra bytes per inference",
        "evaluations spent (of budget)",
        "how",
    ]
    return table(headers, rows)


def _removals(searches: Sequence[_Searched]) -> str:
    rows = [
        [
            s.label,
            d.tensor,
            "not measured" if d.gain_db is None else d.gain_db,
            d.outcome,
            "n/a" if d.output_sqnr_db_without is None else d.output_sqnr_db_without,
            d.why,
        ]
        for s in searches
        for d in s.record.removals
    ]
    if not rows:
        return "<p>No set to prune: no search needed 16-bit activations or found a set.</p>"
    headers = [
        "set",
        "tensor",
        "gain alone at 16 bits (dB)",
        "outcome",
        "output SQNR without it (dB)",
        "why",
    ]
    intro = (
        "<p>Each tensor of the set bisection found, in the order pruning tried it out of "
        "the set (smallest measured gain first): <b>removed</b> when the rest still passes "
        "the gate, <b>stays</b> when the gate fails without it, <b>not tried</b> when the "
        "budget ran out first (it stays).</p>"
    )
    return intro + table(headers, rows)


def _miss(s: _Searched, p: SearchPoint) -> str:
    if s.scene is not None:
        return faces_missed(s.scene, p.face_miss_rate)
    rate = p.face_miss_rate
    return "n/a" if rate is None else f"{percent(rate)} (worst scene)"


def _gate(record: SearchRecord, p: SearchPoint) -> str:
    chosen = record.chosen is not None and set(p.tensors) == set(record.chosen)
    return ("pass" if p.passes_gate else "fail") + (" (chosen)" if chosen else "")


def _pareto(searches: Sequence[_Searched]) -> str:
    rows = [
        [
            s.label,
            _tensors(p.tensors),
            f"{p.extra_bytes:,}",
            p.output_sqnr_db,
            p.output_cosine,
            _miss(s, p),
            _gate(s.record, p),
        ]
        for s in searches
        for p in s.record.pareto
    ]
    headers = [
        "set",
        "16-bit activations",
        "extra bytes per inference",
        "output SQNR dB",
        "output cosine",
        "faces missed",
        "gate",
    ]
    return table(headers, rows)


def section(
    remedies: Mapping[str, RemedyVerdict] | None, scenes: Mapping[str, SceneMetrics]
) -> str:
    """What the searches found, each tensor's removal record, then the Pareto fronts."""
    searches = _searches(remedies or {}, scenes)
    if not searches:
        return "<p>The 16-bit search did not run.</p>"
    return (
        f"<h3>{FOUND}</h3>"
        "<p>Per scene, and for every scene at once (the one model a car that cannot switch "
        "models ships; its scores are the worst scene's).</p>"
        + _found(searches)
        + "<h3>Removal records</h3>"
        + _removals(searches)
        + "<h3>Pareto front</h3><p>Each evaluated set that beats the output SQNR of every "
        "cheaper one, by extra activation bytes per inference (batch 1).</p>" + _pareto(searches)
    )
