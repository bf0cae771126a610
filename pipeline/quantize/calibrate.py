"""Calibration: run the float model over calibration tensors, merge statistics, compute encodings.

Per-image statistics are cached under ``<cache>/stats/<model sha>/<tensor sha>.npy``, keyed by the
content of the ``.raw`` tensor (which already encodes image content and preprocessing) and the
model's hash. Min/max merge exactly, so a run over cached + new images equals a fresh run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_path
from pipeline.errors import NoStatisticsError, ParamsError
from pipeline.model import ModelView, with_outputs
from pipeline.params import QuantizeParams, TensorsParams
from pipeline.quantize.encoding import Encoding, symmetric_encoding, tf_encoding
from pipeline.quantize.observers import MinMax
from pipeline.quantize.simulate import Encodings, bias_encodings
from pipeline.runtime import Runner
from pipeline.tensors import read_raw_nchw

STATS_VERSION = "minmax-1"


@dataclass(frozen=True)
class StatsRun:
    stats: MinMax
    images_run: int  # model executions (cache misses)
    images_cached: int


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def collect_minmax(
    view: ModelView,
    raws: Sequence[Path],
    tp: TensorsParams,
    model_sha: str,
    cache: Path | None,
    batch_size: int = 1,
    progress: Callable[[int], None] | None = None,
) -> StatsRun:
    """Min/max of every tensor of the model over ``raws``; memory is bounded by one batch."""
    names = view.all_tensors
    total = MinMax.empty(names)
    if not raws:
        return StatsRun(total, 0, 0)
    cache_dir = cache / "stats" / f"{STATS_VERSION}-{model_sha[:16]}" if cache else None
    runner: Runner | None = None
    pending: list[tuple[Path, Path | None]] = []
    ran = cached = 0

    def flush() -> None:
        nonlocal runner, total, ran
        if not pending:
            return
        if runner is None:
            runner = Runner(with_outputs(view.model, names))
        x = np.concatenate([read_raw_nchw(p, tp) for p, _ in pending])  # (B,C,H,W)
        values = runner.run(x, names)
        for b, (_, entry) in enumerate(pending):
            one = MinMax.of(names, {k: v[b] for k, v in values.items()})
            if entry is not None:
                with atomic_path(entry) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, np.stack([one.mins, one.maxs]))
            total = total.merge(one)
        ran += len(pending)
        if progress:
            progress(len(pending))
        pending.clear()

    for path in raws:
        entry = cache_dir / f"{_file_sha(path)}.npy" if cache_dir is not None else None
        if entry is not None and entry.is_file():
            arr = np.load(entry)
            if arr.shape == (2, len(names)):
                total = total.merge(MinMax(tuple(names), arr[0], arr[1], 1))
                cached += 1
                if progress:
                    progress(1)
                continue
        pending.append((path, entry))
        if len(pending) >= batch_size:
            flush()
    flush()
    return StatsRun(total, ran, cached)


def activation_encoding(lo: float, hi: float, qp: QuantizeParams) -> Encoding:
    a = qp.activations
    if a.mode == "tf":
        return tf_encoding(lo, hi, a.bitwidth, qp.min_range)
    if a.mode == "symmetric":
        return symmetric_encoding(
            lo,
            hi,
            a.bitwidth,
            qp.min_range,
            strict=qp.strict_symmetric,
            unsigned=qp.unsigned_symmetric,
            rule=qp.symmetric_scale_rule,
        )
    raise ParamsError(
        f"quantize.activations.mode {a.mode!r} is not available in this version of fieldcal; "
        "use 'tf' or 'symmetric'"
    )


def weight_encodings(w: np.ndarray, axis: int, qp: QuantizeParams) -> list[Encoding]:
    wp = qp.weights
    if wp.per_channel:
        moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)  # (C_out, rest)
        return [
            symmetric_encoding(
                float(c.min()),
                float(c.max()),
                wp.bitwidth,
                qp.min_range,
                strict=qp.strict_symmetric,
                rule=qp.symmetric_scale_rule,
            )
            for c in moved
        ]
    lo, hi = float(w.min()), float(w.max())
    if wp.mode == "tf":
        return [tf_encoding(lo, hi, wp.bitwidth, qp.min_range)]
    if wp.mode == "symmetric":
        return [
            symmetric_encoding(
                lo,
                hi,
                wp.bitwidth,
                qp.min_range,
                strict=qp.strict_symmetric,
                unsigned=qp.unsigned_symmetric,
                rule=qp.symmetric_scale_rule,
            )
        ]
    raise ParamsError(
        f"quantize.weights.mode {wp.mode!r} is not available in this version of fieldcal; "
        "use 'tf' or 'symmetric'"
    )


def compute_encodings(view: ModelView, stats: MinMax, qp: QuantizeParams) -> Encodings:
    """Encodings for every activation tensor of the model and every Conv weight and bias."""
    if stats.count == 0:
        raise NoStatisticsError(
            "the calibration set is empty: curate picked no calibration images. "
            "Check curate.calibration quotas and that ingest found images."
        )
    acts: dict[str, Encoding] = {}
    for name in view.all_tensors:
        lo, hi = stats.range_of(name)
        try:
            acts[name] = activation_encoding(lo, hi, qp)
        except ValueError as err:
            raise NoStatisticsError(f"tensor {name!r}: {err}") from None
    weights = {op.weight_name: weight_encodings(op.weight, op.axis, qp) for op in view.weighted}
    axes = {op.weight_name: op.axis for op in view.weighted}
    partial = Encodings(acts, weights, {}, axes)
    biases = {
        op.bias_name: bias_encodings(op, partial, qp.bias_bitwidth, qp.min_range)
        for op in view.weighted
    }
    return Encodings(acts, weights, biases, axes)


def quantizer_args(qp: QuantizeParams, model_sha: str, images: int) -> dict[str, object]:
    """The ``quantizer_args`` block of the encodings file (0.6.1 names, plus fieldcal's own)."""
    a, w = qp.activations, qp.weights
    return {
        "activation_bitwidth": a.bitwidth,
        "param_bitwidth": w.bitwidth,
        "dtype": "int",
        "is_symmetric": str(w.mode == "symmetric" or w.per_channel),
        "per_channel_quantization": str(w.per_channel),
        "quant_scheme": f"act:{a.mode} param:{w.mode}",
        "fieldcal": {
            "backend": qp.backend,
            "bias_bitwidth": qp.bias_bitwidth,
            "calibration_images": images,
            "min_range": qp.min_range,
            "model_sha256": model_sha,
            "round_mode": qp.round_mode,
            "symmetric_scale_rule": qp.symmetric_scale_rule,
            "fused_tensors_note": (
                "activation_encodings cover every tensor of the model; tensors QNN fuses away "
                "(Conv output before BatchNorm/ReLU) carry their own range for reference and "
                "are not quantized in fieldcal's simulation"
            ),
        },
    }


def calibration_record(view: ModelView, stats: MinMax, model_sha: str) -> dict[str, object]:
    kept = set(view.kept_tensors)
    return {
        "model_sha256": model_sha,
        "images": stats.count,
        "tensors": [
            {
                "name": t,
                "op_type": view.producers.get(t, "Input"),
                "kept": t in kept,
                "quantized_at": view.fused_into.get(t, t),
                "min": stats.range_of(t)[0],
                "max": stats.range_of(t)[1],
            }
            for t in view.all_tensors
        ],
    }
