"""onnxruntime, and only here: sessions on the CPU provider with explicit threading."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray

_OPT_LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


class Runner:
    """A CPU inference session over an in-memory model.

    Every model fieldcal runs, simulated-quantized ones included, gets all graph optimisations
    by default (NCHWc convolutions, Conv+activation fusion). That is safe for simulation because
    fieldcal's fake-quant chains use no QuantizeLinear/DequantizeLinear
    (pipeline/quantization/simulate.py), so there is no QDQ pattern for onnxruntime to fuse into
    integer kernels; the float reference and the quantized variants run the same convolution
    kernels. ``"basic"`` and ``"none"`` remain for checks against the unoptimised graph.

    Its pool threads spin-wait between the operators of a run, as by default, but stop when
    the run returns (``session.force_spinning_stop``): fieldcal runs its own kernels on every
    core right after each run, and threads still spinning took their cores. The figures behind
    both choices: benchmarks/README.md, "onnxruntime sessions".
    """

    def __init__(self, model: onnx.ModelProto, optimization: str = "all") -> None:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = _OPT_LEVELS[optimization]
        opts.intra_op_num_threads = int(os.environ.get("FIELDCAL_THREADS", "0") or 0)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # onnxruntime's pool threads otherwise spin on the cores for a while after each run,
        # just when fieldcal's kernels start on the outputs (see the class docstring).
        opts.add_session_config_entry("session.force_spinning_stop", "1")
        opts.enable_mem_pattern = False  # dynamic H/W: memory patterns only waste time
        self.session = ort.InferenceSession(
            model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(
        self, x: NDArray[np.float32], names: Sequence[str] | None = None
    ) -> dict[str, NDArray[np.float32]]:
        """Outputs by name for the input batch ``x``, a float32 ndarray in the model's own
        layout, (N, C, H, W) or (N, H, W, C) (``ModelView.input_layout``).

        The outputs are views of onnxruntime's own output buffers (``OrtValue.numpy`` shares
        memory and keeps the buffer alive), not copies: ``session.run`` would copy every output
        once more, which for a model exposing all its activations doubles the memory they take
        and adds a pass over them."""
        wanted = list(names) if names is not None else self.output_names
        x = np.ascontiguousarray(x)
        feed = {self.input_name: ort.OrtValue.ortvalue_from_numpy(x)}
        values = self.session.run_with_ort_values(wanted, feed)
        # The input asked back as an output is ``x`` itself: onnxruntime's value for it only
        # borrows x's memory, which is freed with x once the caller drops it.
        return {
            name: x if name == self.input_name else v.numpy()
            for name, v in zip(wanted, values, strict=True)
        }
