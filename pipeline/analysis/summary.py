"""Scene results to the evaluate stage's artifacts: layer rows, scene metrics, the document."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.analysis.artifacts import (
    LayerRow,
    MetricsDocument,
    OutputMetric,
    RunInfo,
    SceneMetrics,
    SweepPoint,
    worst_first,
)
from pipeline.analysis.gates import GateFailure, failures_against, gate_for, gate_record
from pipeline.analysis.metrics import LayerAcc
from pipeline.analysis.runs import SceneResult
from pipeline.errors import ParamsError
from pipeline.graph.view import ModelView
from pipeline.params import EvaluateParams, QuantizeParams


def headline_outputs(view: ModelView, p: EvaluateParams) -> list[str]:
    """The outputs behind the headline metrics (``evaluate.outputs``, else all)."""
    headline = list(p.outputs) or view.outputs
    unknown = [o for o in headline if o not in view.outputs]
    if unknown:
        raise ParamsError(
            f"evaluate.outputs names {unknown}, which the model does not output; "
            f"its outputs are {view.outputs}"
        )
    return headline


def layer_row(i: int, t: str, view: ModelView, res: SceneResult, sig: str) -> LayerRow:
    """One kept tensor's row: accumulated metrics, attribution, own error and tail."""
    layers = res.layers
    w_s = a_s = None
    if "weights_only" in layers:
        w_s = layers["weights_only"][t].sqnr(sig)
        a_s = layers["activations_only"][t].sqnr(sig)
    own = layers.get("layerwise", {}).get(t)
    return LayerRow(
        layer_index=i,
        layer=t,
        op_type=view.producers.get(t, "Input"),
        **layers["full"][t].summary(sig).model_dump(),
        sqnr_weights_only_db=w_s,
        sqnr_activations_only_db=a_s,
        dominant=None if w_s is None or a_s is None else "weights" if w_s < a_s else "activations",
        sqnr_layerwise_db=own.sqnr(sig) if own is not None else None,
        tail_ratio=float(np.mean(res.tail[t])) if t in res.tail else None,
    )


def _sweep(
    headline: Sequence[str], kinds: Mapping[str, dict[str, LayerAcc]], sig: str
) -> SweepPoint:
    """Output SQNR (min over the headline outputs, with the configured signal) of each sweep
    variant."""
    return SweepPoint(
        **{kind: min(accs[o].sqnr(sig) for o in headline) for kind, accs in kinds.items()}
    )


def scene_metrics(
    scene: str, view: ModelView, res: SceneResult, rows: Sequence[LayerRow], p: EvaluateParams
) -> SceneMetrics:
    """A scene's metrics block: headline outputs, the layer to blame, faces, sweep, gate."""
    sig = p.sqnr_signal
    headline = headline_outputs(view, p)
    full = res.layers["full"]
    outs = {o: full[o].summary(sig) for o in view.outputs}
    inner = [r for r in rows if not r.is_input]
    worst = rows[
        view.kept_tensors.index(
            worst_first((r.layer, r.sqnr_layerwise_db, r.sqnr_db) for r in inner)[0]
        )
    ]
    gate = gate_record(gate_for(scene, p))
    m = SceneMetrics(
        images=res.images,
        output_sqnr_db=min(outs[o].sqnr_db for o in headline),
        output_cosine=min(outs[o].cosine for o in headline),
        outputs={o: OutputMetric(sqnr_db=s.sqnr_db, cosine=s.cosine) for o, s in outs.items()},
        worst_layer=worst.layer,
        worst_layer_sqnr_db=worst.sqnr_db,
        worst_layer_clip_rate=worst.clip_rate,
        worst_layer_dominant=worst.dominant or "n/a",
        worst_layer_own_sqnr_db=worst.sqnr_layerwise_db,
        faces=res.detections.summary() if res.detections is not None else None,
        sensitivity={
            layer: _sweep(headline, kinds, sig) for layer, kinds in sorted(res.sensitivity.items())
        }
        or None,
        gate=gate,
    )
    passed = not failures_against(scene, m, gate)
    return m.model_copy(update={"gate": gate.model_copy(update={"passed": passed})})


def summarize(
    view: ModelView, results: Mapping[str, SceneResult], p: EvaluateParams
) -> tuple[dict[str, SceneMetrics], dict[str, list[LayerRow]], list[GateFailure]]:
    """(metrics.json block per scene, per-scene layer rows, gate failures)."""
    headline_outputs(view, p)  # a bad evaluate.outputs fails before any scene
    metrics: dict[str, SceneMetrics] = {}
    layer_rows: dict[str, list[LayerRow]] = {}
    failures: list[GateFailure] = []
    for scene in sorted(results):
        res = results[scene]
        rows = [layer_row(i, t, view, res, p.sqnr_signal) for i, t in enumerate(view.kept_tensors)]
        m = scene_metrics(scene, view, res, rows, p)
        layer_rows[scene], metrics[scene] = rows, m
        failures += failures_against(scene, m, m.gate)
    return metrics, layer_rows, failures


def metrics_document(
    scenes: dict[str, SceneMetrics],
    qp: QuantizeParams,
    ep: EvaluateParams,
    model_path: Path,
    model_sha: str,
) -> MetricsDocument:
    """``metrics.json``: run facts, then one block per scene (hierarchical for dvc metrics)."""
    a, w = qp.activations, qp.weights
    granularity = "per-channel" if w.per_channel else "per-tensor"
    return MetricsDocument(
        run=RunInfo(
            model=model_path.as_posix(),
            model_sha256=model_sha,
            backend=qp.backend,
            activations=f"{a.mode} {a.bitwidth}-bit",
            weights=f"{w.mode} {w.bitwidth}-bit {granularity}",
            bias_bitwidth=qp.bias_bitwidth,
            sqnr_signal=ep.sqnr_signal,
            simulation=ep.simulation,
        ),
        passed=all(s.gate.passed for s in scenes.values()),
        scenes=scenes,
    )
