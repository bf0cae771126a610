"""Shared test inputs: tiny ONNX models, libpymo's reference data and raw tensors on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from pipeline.data.tensors import write_raw
from pipeline.graph.view import ModelView, analyze

IMAGE = ["N", 3, "H", "W"]  # a dynamic NCHW image batch


def initializer(name: str, arr: NDArray[np.generic] | float) -> onnx.TensorProto:
    """A float32 initializer."""
    return numpy_helper.from_array(np.asarray(arr, np.float32), name)


def model_of(
    nodes: Sequence[onnx.NodeProto],
    inits: Sequence[onnx.TensorProto] = (),
    *,
    shape: Sequence[int | str] = IMAGE,
    names: tuple[str, str] = ("x", "y"),
    opset: int = 13,
) -> onnx.ModelProto:
    """A float graph from input ``names[0]`` to output ``names[1]``, both of ``shape``."""
    spec = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(shape)) for n in names]
    g = helper.make_graph(list(nodes), "g", spec[:1], spec[1:], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def view_of(nodes: Sequence[onnx.NodeProto], inits: Sequence[onnx.TensorProto] = ()) -> ModelView:
    """The view of an opset-13 graph from ``x`` to ``y``, both (N, 3, H, W) float."""
    return analyze(model_of(nodes, inits))


def libpymo_data() -> NDArray[np.float32]:
    """The data behind libpymo's reference vectors (docs §4.5): 100000 standard normal samples
    (seed 0) and five outliers at 30."""
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(size=100000), [30.0] * 5]).astype(np.float32)


def write_raws(folder: Path, arrays: Sequence[NDArray[np.float32]]) -> list[Path]:
    """Each array as ``folder/<i>.raw`` (float32, no header), in order."""
    raws = [folder / f"{i}.raw" for i in range(len(arrays))]
    for raw, x in zip(raws, arrays, strict=True):
        write_raw(raw, x)
    return raws
