"""Run under AIMET's interpreter: libpymo encodings of the arrays aimet_parity.py dumped.

Feeds each tensor's arrays image by image to ``BlockTensorQuantizer.updateStats`` (the same
order fieldcal uses) and writes ``libpymo.json``: {kind: {tensor: [[min, max, scale, offset]]}}.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
try:
    from aimet_onnx.common import libpymo
except ImportError:  # older aimet-onnx
    from aimet_common import libpymo

M = libpymo.QuantizationMode


def encode(arrays, mode, symmetric, shape=(1,), percentile=None):
    q = libpymo.BlockTensorQuantizer(list(shape), 8, mode)
    if percentile is not None:
        q.setPercentileValue(percentile)
    for a in arrays:
        q.updateStats(np.ascontiguousarray(a, dtype=np.float32))
    encs = q.computeEncodings(symmetric)
    return [[e.min, e.max, e.delta, int(e.offset)] for e in encs]


def main(workdir: Path) -> None:
    meta = json.loads((workdir / "meta.json").read_text())
    out: dict[str, dict[str, list]] = {}
    for t, name in enumerate(meta["activations"]):
        arrays = [np.load(workdir / f"act_{t:04d}_{i:04d}.npy") for i in range(meta["images"])]
        out.setdefault("tf", {})[name] = encode(arrays, M.QUANTIZATION_TF, False)
        out.setdefault("symmetric", {})[name] = encode(arrays, M.QUANTIZATION_TF, True)
        out.setdefault("enhanced", {})[name] = encode(arrays, M.QUANTIZATION_TF_ENHANCED, False)
        out.setdefault("percentile", {})[name] = encode(
            arrays, M.QUANTIZATION_PERCENTILE, False, percentile=99.99
        )
    for w, name in enumerate(meta["weights"]):
        arr = np.load(workdir / f"w_{w:04d}.npy")  # (C_out, ...)
        out.setdefault("w_tf", {})[name] = encode([arr], M.QUANTIZATION_TF, False)
        shape = (arr.shape[0],) + (1,) * (arr.ndim - 1)
        out.setdefault("w_symmetric_pc", {})[name] = encode([arr], M.QUANTIZATION_TF, True, shape)
    (workdir / "libpymo.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
