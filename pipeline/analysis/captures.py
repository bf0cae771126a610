"""The calibration-side remedy: more in-vehicle captures of a scene that clips in the field.

Proposed when a field session's coverage verdict (out/coverage/coverage.json) has a tensor of
that scene clipping more than ``coverage.clip_rate_max``: the encodings were calibrated on data
that does not reach the field's range. How many captures: the stability curve of the scene
(out/stability/stability.json) gives the calibration set size from which scales settle
(``enough``); when the curve has not settled, it cannot tell, and the proposal asks to double
the scene's calibration set, saying so.
"""

from __future__ import annotations

from pipeline.analysis.artifacts import CoverageTensor
from pipeline.analysis.candidates import FieldEvidence
from pipeline.analysis.remedy_artifacts import CaptureProposal
from pipeline.report.numbers import percent_beside


def proposal(scene: str, field: FieldEvidence | None) -> CaptureProposal | None:
    """The proposal for ``scene``, or None when no session clips it (or no field data)."""
    if field is None:
        return None
    clipping: list[tuple[str, CoverageTensor]] = []
    for session, scenes in sorted(field.coverage.items()):
        v = scenes.get(scene)
        worst = max(v.tensors, key=lambda r: r.clip_rate, default=None) if v else None
        if worst is not None and worst.clip_rate > field.clip_rate_max:
            clipping.append((session, worst))
    if not clipping:
        return None
    session, worst = max(clipping, key=lambda c: c[1].clip_rate)
    rate, limit = percent_beside(worst.clip_rate, field.clip_rate_max)
    curve = field.stability.get(scene)
    if curve is not None and curve.enough is not None and curve.enough < curve.images:
        n = curve.enough
        why = (
            f"the {scene} stability curve settles (scales move < {curve.tolerance:.0%}) from "
            f"{n} calibration images: add {n} in-vehicle captures of {scene} to calibration"
        )
    else:
        n = curve.images if curve is not None else 0
        why = (
            f"cannot tell how many are enough: the {scene} stability curve has not settled by "
            f"its {n} images; add about {n} captures (double the set) and run again"
            if curve is not None
            else f"no stability curve for {scene}: add captures and run the stability stage"
        )
    return CaptureProposal(
        sessions=[s for s, _ in clipping],
        worst_clip=f"{session}: tensor {worst.tensor} clips {rate} (limit {limit})",
        captures=n,
        why=why,
    )
