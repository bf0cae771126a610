"""The Qualcomm QNN SDK as an optional backend: command lines, and reading what its tools write.

fieldcal never calls a shell: every command is an argv list. The SDK is not installable from a
package index; when ``qnn-onnx-converter`` is on PATH (after the SDK's ``envsetup.sh``) the
quantize stage can run it, otherwise the embedded backend runs and reports say so.

``qnn-net-run`` writes, for line i of the input list (0-based, output-selection lines not
counted), ``<output_dir>/Result_<i>/<tensor>.raw``: float32 unless native outputs were asked for,
tensor names sanitised ``[^A-Za-z0-9_]+ -> _`` (docs §9.7). A leading ``_`` for names that start
with a digit was seen in the field but is not documented, so both spellings are tried.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pipeline.errors import DataError, ParamsError, PipelineError
from pipeline.params import QuantizeParams

CONVERTER = "qnn-onnx-converter"
NET_RUN = "qnn-net-run"


def find_tool(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


# The newer calibration family: fieldcal mode -> (calibration, schema). "enhanced" as "sqnr" is
# docs §4's inferred correspondence; "adjusted" has no name in this family.
_CALIBRATION = {
    "tf": ("min-max", "asymmetric"),
    "symmetric": ("min-max", "symmetric"),
    "enhanced": ("sqnr", "asymmetric"),
    "percentile": ("percentile", "asymmetric"),
}


def _quantizer_options(qp: QuantizeParams) -> list[str]:
    """The quantizer options for ``qp``: QNN's legacy family when neither side is percentile
    (its names are fieldcal's), otherwise the calibration family for both sides, because the two
    families cannot be mixed (docs §9.7). A combination QNN's command line cannot express is a
    :class:`ParamsError` naming it, never a silently different command."""
    a, w = qp.activations, qp.weights
    if "percentile" not in (a.mode, w.mode):
        return ["--act_quantizer", a.mode, "--param_quantizer", w.mode]
    if w.mode == "adjusted":
        raise ParamsError(
            "qnn-onnx-converter cannot take percentile activations with 'adjusted' weights: "
            "percentile exists only among the calibration options and 'adjusted' only among the "
            "legacy ones, which cannot be mixed. Set quantize.weights.mode to tf or symmetric."
        )
    values = {m.percentile for m in (a, w) if m.mode == "percentile"}
    if len(values) > 1:
        raise ParamsError(
            "qnn-onnx-converter has one --percentile_calibration_value for activations and "
            f"weights; params ask for {a.percentile} and {w.percentile}. "
            "Set quantize.activations.percentile and quantize.weights.percentile equal."
        )
    act, act_schema = _CALIBRATION[a.mode]
    param, param_schema = _CALIBRATION[w.mode]
    return [
        "--act_quantizer_calibration",
        act,
        "--act_quantizer_schema",
        act_schema,
        "--param_quantizer_calibration",
        param,
        "--param_quantizer_schema",
        param_schema,
        "--percentile_calibration_value",
        repr(values.pop()),
    ]


def converter_command(
    model: Path,
    input_list: Path,
    output: Path,
    qp: QuantizeParams,
    overrides: Path | None = None,
    tool: Path | str = CONVERTER,
) -> list[str]:
    """argv for qnn-onnx-converter matching ``qp`` (docs §3.4, §4.4, §5.4, §9.7)."""
    argv = [
        str(tool),
        "--input_network",
        str(model),
        "--output_path",
        str(output),
        "--input_list",
        str(input_list),
        "--act_bitwidth",
        str(qp.activations.bitwidth),
        "--weights_bitwidth",
        str(qp.weights.bitwidth),
        "--bias_bitwidth",
        str(qp.bias_bitwidth),
        *_quantizer_options(qp),
    ]
    if qp.weights.per_channel:
        argv.append("--use_per_channel_quantization")
    if overrides is not None:
        argv += ["--quantization_overrides", str(overrides)]
    return argv


def net_run_command(
    model_lib: Path,
    backend_lib: Path,
    input_list: Path,
    output_dir: Path,
    tool: Path | str = NET_RUN,
) -> list[str]:
    return [
        str(tool),
        "--model",
        str(model_lib),
        "--backend",
        str(backend_lib),
        "--input_list",
        str(input_list),
        "--output_dir",
        str(output_dir),
    ]


def run(argv: Sequence[str], cwd: Path | None = None) -> None:
    """Run an SDK tool (argv list, no shell); a failure is a PipelineError with its output."""
    proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise PipelineError(f"{argv[0]} failed with exit code {proc.returncode}:\n{tail}")


def sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name)


@dataclass(frozen=True)
class NetRunOutput:
    line: int
    tensors: dict[str, NDArray[np.float32]]
    files: dict[str, Path]


def read_net_run_outputs(
    output_dir: Path, lines: int, shapes: dict[str, tuple[int, ...]]
) -> list[NetRunOutput]:
    """Read ``Result_<i>/<tensor>.raw`` for i < lines, reshaped to ``shapes`` (float32).

    A missing file or a size that does not match its shape is a DataError naming both.
    """
    out = []
    for i in range(lines):
        folder = output_dir / f"Result_{i}"
        tensors, files = {}, {}
        for name, shape in shapes.items():
            candidates = [folder / f"{sanitize(name)}.raw", folder / f"_{sanitize(name)}.raw"]
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                raise DataError(
                    f"{folder}: no output for tensor {name!r} (looked for "
                    f"{', '.join(p.name for p in candidates)})"
                )
            data = np.fromfile(path, dtype="<f4")
            if data.size != int(np.prod(shape)):
                raise DataError(
                    f"{path} holds {data.size} float32 values; tensor {name!r} has shape "
                    f"{list(shape)} ({int(np.prod(shape))} values). Native (quantized) outputs "
                    "are not float32: run qnn-net-run without --use_native_output_files."
                )
            tensors[name], files[name] = data.reshape(shape), path
        out.append(NetRunOutput(i, tensors, files))
    return out
