"""What two reference tools would spend to meet the same gate, from their documented
algorithms applied to fieldcal's measured data. These are estimates, not runs of the tools:
neither is installed, and both would revert tensors to float where fieldcal raises them to 16
bits. One *evaluation* is one set of precisions scored on the scene's images, as in
:mod:`pipeline.analysis.search`; the float references are computed once and not counted by
any of the three.

* **NNCF** ``quantize_with_accuracy_control`` (OpenVINO docs, "Quantizing with Accuracy
  Control", and the AccuracyAwareQuantization algorithm it descends from): the fully quantized
  model is evaluated (1); every quantized layer group is ranked by reverting it alone and
  measuring the metric (n, one per candidate); then the groups are reverted one at a time in
  ranked order, each revert followed by an evaluation, until the drop is within ``max_drop``
  (r). Applied here: n = fieldcal's candidates upstream of the gated outputs, and r = the
  shortest passing prefix of a ranking by gain alone, which is the prefix fieldcal's bisection
  found over the same ranking (measured gains first, then the seed order for the tensors
  fieldcal did not measure). NNCF does not prune, so its set is those r tensors.
* **AIMET** mixed precision (``choose_mixed_precision``, AIMET docs "Automatic mixed
  precision"): phase 1 evaluates every quantizer group at the lower candidate with the rest at
  the higher (n, plus 1 for the all-high baseline); phase 2 builds the Pareto front by lowering
  groups one at a time in sensitivity order, one evaluation per point (n); phase 3 searches the
  front by bisection for the cheapest point within the allowed drop (ceil(log2 n)). Its set is
  the front point found, estimated here as the same ranked prefix (r).
"""

from __future__ import annotations

import math

from pipeline.analysis.remedy_artifacts import AnchorEstimate, SearchRecord

BASIS = (
    "estimate from the documented algorithm applied to fieldcal's measured data, not a run "
    "of the tool (pipeline/analysis/anchors.py)"
)


def prefix_found(record: SearchRecord) -> int | None:
    """The ranked prefix bisection found (the set before pruning), None when no set passed."""
    if record.chosen is None:
        return None
    return len(record.removals) if record.removals else len(record.chosen)


def estimates(record: SearchRecord) -> list[AnchorEstimate]:
    """NNCF's and AIMET's evaluations and set sizes for the gate of ``record``."""
    n = record.candidates
    r = prefix_found(record)
    if record.chosen == []:  # the 8-bit model passes: one evaluation says so, for every tool
        return [
            AnchorEstimate(tool=t, evaluations=1, set_size=0, basis=BASIS)
            for t in ("nncf.quantize_with_accuracy_control", "aimet mixed precision")
        ]
    reverts = r if r is not None else n  # none passes: NNCF reverts everything before it stops
    return [
        AnchorEstimate(
            tool="nncf.quantize_with_accuracy_control",
            evaluations=1 + n + reverts,
            set_size=r,
            basis=f"1 quantized + {n} ranking (one per candidate) + {reverts} reverts; {BASIS}",
        ),
        AnchorEstimate(
            tool="aimet mixed precision",
            evaluations=1 + n + n + math.ceil(math.log2(max(n, 2))),
            set_size=r,
            basis=(
                f"phase 1: 1 baseline + {n} (one per candidate), phase 2: {n} Pareto points, "
                f"phase 3: {math.ceil(math.log2(max(n, 2)))} bisection steps; {BASIS}"
            ),
        ),
    ]
