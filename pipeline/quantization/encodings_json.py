"""AIMET / QNN quantization-overrides files (docs §9.3-§9.5): write 1.0.0 and 0.6.1, read both.

Reading recomputes scale and offset from (bitwidth, min, max, is_symmetric), as QNN does, and
reports stored values that disagree instead of trusting them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import DataError
from pipeline.graph.view import ModelView
from pipeline.quantization.encoding import Encoding, from_min_max, from_scale_offset
from pipeline.quantization.encodings import Encodings


def _entry_1_0_0(name: str, encs: list[Encoding], per_channel: bool) -> dict[str, Any]:
    return {
        "name": name,
        "dtype": "INT",
        "enc_type": "PER_CHANNEL" if per_channel else "PER_TENSOR",
        "bw": encs[0].bitwidth,
        "is_sym": encs[0].symmetric,
        "scale": [e.scale for e in encs],
        "offset": [e.offset for e in encs],
    }


def to_1_0_0(enc: Encodings, quantizer_args: dict[str, Any]) -> dict[str, Any]:
    acts = [_entry_1_0_0(n, [e], False) for n, e in enc.activations.items()]
    params = [_entry_1_0_0(n, es, len(es) > 1) for n, es in enc.weights.items()]
    params += [_entry_1_0_0(n, es, len(es) > 1) for n, es in enc.biases.items()]
    return {
        "version": "1.0.0",
        "activation_encodings": acts,
        "param_encodings": params,
        "excluded_layers": [],
        "quantizer_args": quantizer_args,
    }


def _legacy(e: Encoding) -> dict[str, Any]:
    return {
        "bitwidth": e.bitwidth,
        "dtype": "int",
        "is_symmetric": str(e.symmetric),
        "max": e.max,
        "min": e.min,
        "offset": e.offset,
        "scale": e.scale,
    }


def to_0_6_1(enc: Encodings, quantizer_args: dict[str, Any]) -> dict[str, Any]:
    params = {n: [_legacy(e) for e in es] for n, es in enc.weights.items()}
    params.update({n: [_legacy(e) for e in es] for n, es in enc.biases.items()})
    return {
        "version": "0.6.1",
        "activation_encodings": {n: [_legacy(e)] for n, e in enc.activations.items()},
        "param_encodings": params,
        "quantizer_args": quantizer_args,
    }


@dataclass(frozen=True)
class LoadedEncodings:
    activations: dict[str, list[Encoding]]
    params: dict[str, list[Encoding]]
    version: str
    # "tensor[i]: stored scale 0.1 != recomputed 0.1003" lines; empty when all agree.
    disagreements: list[str]


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-12)


def _read_legacy(name: str, d: dict[str, Any], where: str, notes: list[str]) -> Encoding:
    if str(d.get("dtype", "int")).lower() == "float":
        raise DataError(f"{where}: {name!r} is a float encoding; fieldcal reads integer ones only")
    try:
        bw, lo, hi = int(d["bitwidth"]), float(d["min"]), float(d["max"])
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{where}: {name!r} needs bitwidth, min and max ({err})") from None
    sym = str(d.get("is_symmetric", "False")).lower() == "true"
    e = from_min_max(bw, lo, hi, sym)
    if "scale" in d and not _close(float(d["scale"]), e.scale):
        notes.append(f"{name}: stored scale {d['scale']} != recomputed {e.scale}")
    if "offset" in d and int(d["offset"]) != e.offset:
        notes.append(f"{name}: stored offset {d['offset']} != recomputed {e.offset}")
    return e


def read(path: Path) -> LoadedEncodings:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable encodings JSON ({err})") from None
    if not isinstance(data, dict) or "activation_encodings" not in data:
        raise DataError(f"{path}: missing 'activation_encodings'; not an AIMET/QNN encodings file")
    version = str(data.get("version", "0.6.1"))
    notes: list[str] = []
    acts: dict[str, list[Encoding]] = {}
    params: dict[str, list[Encoding]] = {}
    if version.startswith("1."):
        for key, target in (("activation_encodings", acts), ("param_encodings", params)):
            for item in data.get(key, []):
                if str(item.get("dtype", "INT")).upper() != "INT":
                    continue
                bw, sym = int(item["bw"]), bool(item["is_sym"])
                target[item["name"]] = [
                    from_scale_offset(bw, float(s), int(o), sym)
                    for s, o in zip(item["scale"], item["offset"], strict=True)
                ]
    else:
        for key, target in (("activation_encodings", acts), ("param_encodings", params)):
            for name, entries in data.get(key, {}).items():
                target[name] = [
                    _read_legacy(f"{name}[{i}]", d, str(path), notes)
                    for i, d in enumerate(entries)
                    if str(d.get("dtype", "int")).lower() != "float"
                ]
    return LoadedEncodings(acts, params, version, notes)


def for_model(loaded: LoadedEncodings, view: ModelView, source: Path) -> Encodings:
    """Match a loaded file to a model; a tensor QNN keeps that has no encoding is an error
    (QNN would silently recalibrate it from the input list, quic/aimet #4071)."""
    missing = [t for t in view.kept_tensors if t not in loaded.activations]
    missing += [
        n
        for op in view.weighted
        for n in (op.weight_name, op.bias_name)
        if n and n not in loaded.params
    ]
    if missing:
        raise DataError(
            f"{source} has no encoding for {len(missing)} tensor(s) of the model, e.g. "
            f"{missing[:5]}; re-run the quantize stage for this model"
        )
    acts = {t: es[0] for t, es in loaded.activations.items()}
    weights = {op.weight_name: loaded.params[op.weight_name] for op in view.weighted}
    biases = {op.bias_name: loaded.params[op.bias_name] for op in view.weighted if op.bias_name}
    axes = {op.weight_name: op.axis for op in view.weighted}
    return Encodings(acts, weights, biases, axes)


@dataclass(frozen=True)
class Change:
    tensor: str
    kind: str  # activation | param
    scale_change: float  # relative, largest over channels
    offset_change: int  # largest absolute change over channels
    min_a: float
    max_a: float
    min_b: float
    max_b: float


def diff(
    a: LoadedEncodings, b: LoadedEncodings, tolerance: float = 0.01
) -> tuple[list[Change], list[str], list[str]]:
    """Tensors whose scale moved by more than ``tolerance`` (relative) or whose offset moved,
    sorted by the size of the move; plus the tensors only in A and only in B."""
    changes = []
    for kind, ea, eb in (
        ("activation", a.activations, b.activations),
        ("param", a.params, b.params),
    ):
        for name in sorted(set(ea) & set(eb)):
            xs, ys = ea[name], eb[name]
            if len(xs) != len(ys):
                changes.append(
                    Change(name, kind, math.inf, 0, xs[0].min, xs[0].max, ys[0].min, ys[0].max)
                )
                continue
            rel = max(
                abs(y.scale - x.scale) / max(abs(x.scale), 1e-30)
                for x, y in zip(xs, ys, strict=True)
            )
            off = max(abs(y.offset - x.offset) for x, y in zip(xs, ys, strict=True))
            if rel > tolerance or off:
                changes.append(
                    Change(
                        name,
                        kind,
                        rel,
                        off,
                        min(x.min for x in xs),
                        max(x.max for x in xs),
                        min(y.min for y in ys),
                        max(y.max for y in ys),
                    )
                )
    changes.sort(key=lambda c: (-c.scale_change, -c.offset_change, c.tensor))
    only_a = sorted((set(a.activations) | set(a.params)) - (set(b.activations) | set(b.params)))
    only_b = sorted((set(b.activations) | set(b.params)) - (set(a.activations) | set(a.params)))
    return changes, only_a, only_b
