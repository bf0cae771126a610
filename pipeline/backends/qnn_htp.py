"""Qualcomm's HTP through onnxruntime-qnn: QDQ sessions that run wholly on it, and its versions.

On x86_64 Linux the wheel's ``libQnnHtp.so`` is Qualcomm's HTP emulator; on a Snapdragon machine
the same calls drive the real accelerator. Every session here has CPU fallback disabled
(``session.disable_cpu_ep_fallback=1``); when that makes session creation fail, the model is
loaded once more with fallback allowed and graph assignment recorded, and the error names the
nodes that would have left the HTP. The EP needs static shapes: the input's comes from the
tensors params (:func:`input_shape`), the rest are inferred.
"""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray

from pipeline.errors import ModelError, PipelineError

EP_NAME = "QNNExecutionProvider"
BACKEND = "qnn-htp"
INSTALL = "pip install 'fieldcal[qnn]'"
_SUPPORTED = {("Linux", "x86_64"), ("Linux", "aarch64"), ("Windows", "AMD64"), ("Windows", "ARM64")}


class HtpUnavailableError(PipelineError):
    """onnxruntime-qnn (the ``qnn`` extra) is not installed, or too old an onnxruntime."""


class HtpFallbackError(ModelError):
    """A model does not run wholly on the HTP; the message lists the nodes that fell back."""


def unsupported_platform() -> str | None:
    """Why onnxruntime-qnn has no wheel for this machine, or None where it has one."""
    here = (platform.system(), platform.machine())
    if here in _SUPPORTED:
        return None
    return (
        f"onnxruntime-qnn ships wheels for x86_64/ARM64 Linux and Windows only; "
        f"this is {here[0]} {here[1]}"
    )


def _modules() -> tuple[ModuleType, ModuleType]:
    try:
        import onnxruntime as ort
        import onnxruntime_qnn
    except ImportError as err:
        why = unsupported_platform() or f"it is not installed ({err})"
        raise HtpUnavailableError(
            f"the {BACKEND} backend needs onnxruntime-qnn and onnxruntime>=1.24.2; {why}. "
            f"Install it with: {INSTALL}"
        ) from None
    if not hasattr(ort, "register_execution_provider_library"):
        raise HtpUnavailableError(
            f"onnxruntime {ort.__version__} cannot load plugin execution providers; "
            f"the {BACKEND} backend needs onnxruntime>=1.24.2: {INSTALL}"
        )
    return ort, onnxruntime_qnn


@cache
def _runtime() -> ModuleType:
    """onnxruntime with the QNN plugin EP registered (once per process)."""
    ort, qnn = _modules()
    ort.set_default_logger_severity(3)  # the EP's own partitioning notes; errors still raise
    if not any(d.ep_name == EP_NAME for d in ort.get_ep_devices()):
        ort.register_execution_provider_library(EP_NAME, qnn.get_library_path())
    return ort


@cache
def _session_errors() -> tuple[type[Exception], ...]:
    """What onnxruntime raises when a session cannot be made (none derive from RuntimeError)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "NotImplemented", "RuntimeException", "InvalidGraph")
    return tuple(getattr(state, n) for n in (*names, "EPFail") if hasattr(state, n))


# ---------------------------------------------------------------------------------------------
# versions


@dataclass(frozen=True)
class Versions:
    """What produced a number on the HTP; every metric from this backend carries it."""

    onnxruntime: str
    onnxruntime_qnn: str
    qairt: str  # QAIRT/QNN SDK release the wheel was built with
    qnn_core_api: str  # from libQnnHtp.so's QnnInterface_getProviders
    qnn_htp_api: str
    qnn_build_id: str  # QnnBackend_getBuildId

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class _QnnVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32), ("patch", ctypes.c_uint32)]

    def text(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


class _QnnInterface(ctypes.Structure):
    # QnnInterface_t (QnnInterface.h): backendId, providerName, apiVersion{core, backend}, then
    # the function table; its 5th entry (index 4) is QnnBackend_getBuildId.
    _fields_ = [
        ("backend_id", ctypes.c_uint32),
        ("provider_name", ctypes.c_char_p),
        ("core_api", _QnnVersion),
        ("backend_api", _QnnVersion),
        ("functions", ctypes.c_void_p * 5),
    ]


def _library_versions(lib_path: str) -> tuple[str, str, str]:
    """(core API, backend API, build id) of a QNN backend library; "unknown" where unread."""
    unknown = ("unknown", "unknown", "unknown")
    try:
        get = ctypes.CDLL(lib_path).QnnInterface_getProviders
    except (OSError, AttributeError):
        return unknown
    get.restype = ctypes.c_uint64
    providers = ctypes.POINTER(ctypes.POINTER(_QnnInterface))()
    count = ctypes.c_uint32(0)
    if get(ctypes.byref(providers), ctypes.byref(count)) != 0 or count.value < 1:
        return unknown
    iface = providers[0].contents
    build = "unknown"
    if iface.functions[4]:
        fn = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.POINTER(ctypes.c_char_p))
        out = ctypes.c_char_p()
        if fn(iface.functions[4])(ctypes.byref(out)) == 0 and out.value:
            build = out.value.decode(errors="replace")
    return iface.core_api.text(), iface.backend_api.text(), build


@cache
def versions() -> Versions:
    ort, qnn = _modules()
    info = getattr(qnn, "build_and_package_info", None)
    core, backend, build = _library_versions(qnn.get_qnn_htp_path())
    return Versions(
        onnxruntime=str(ort.__version__),
        onnxruntime_qnn=str(getattr(qnn, "__version__", "unknown")),
        qairt=str(getattr(info, "qnn_version", "unknown")),
        qnn_core_api=core,
        qnn_htp_api=backend,
        qnn_build_id=build,
    )


# ---------------------------------------------------------------------------------------------
# sessions


def input_shape(height: int, width: int, layout: str, channels: int = 3) -> tuple[int, ...]:
    """The static input shape of one image for a model taking ``layout`` ("NCHW"/"NHWC")."""
    if layout == "NHWC":
        return (1, height, width, channels)
    return (1, channels, height, width)


def make_static(model: onnx.ModelProto, shape: Sequence[int]) -> onnx.ModelProto:
    """A copy of a single-input model with the input's shape fixed and every other shape
    inferred from it (the outputs' symbolic dims cleared first)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    init_names = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in init_names]
    if len(inputs) != 1:
        raise ModelError(f"the HTP backend takes one graph input; got {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise ModelError(f"input {inputs[0].name!r} has rank {len(dims)}; expected {len(shape)}")
    for d, v in zip(dims, shape, strict=True):
        d.Clear()
        d.dim_value = int(v)
    for o in g.output:
        o.type.tensor_type.ClearField("shape")
    del g.value_info[:]
    inferred: onnx.ModelProto = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    return inferred


@dataclass(frozen=True)
class SessionConfig:
    """How a session is made: QNN provider options (``soc_model``, ``htp_arch``, ...), extra
    session config entries (``ep.context_*``) and onnxruntime's intra-op threads (0: default)."""

    provider_options: Mapping[str, str] | None = None
    entries: Mapping[str, str] | None = None
    threads: int = 0


def _options(cfg: SessionConfig, fallback: bool) -> Any:
    ort = _runtime()
    _, qnn = _modules()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = cfg.threads
    for k, v in (cfg.entries or {}).items():
        opts.add_session_config_entry(k, v)
    if fallback:
        opts.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    else:
        opts.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    devices = [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]
    if not devices:
        raise HtpUnavailableError(f"onnxruntime lists no {EP_NAME} device; reinstall: {INSTALL}")
    po = {"backend_path": qnn.get_qnn_htp_path(), **(cfg.provider_options or {})}
    opts.add_provider_for_devices(devices, po)
    return opts


def fallen_back(source: str | bytes, cfg: SessionConfig) -> list[str]:
    """Nodes outside the QNN EP's partitions, from a session that allows CPU fallback."""
    ort = _runtime()
    try:
        sess = ort.InferenceSession(source, sess_options=_options(cfg, fallback=True))
    except _session_errors() as err:  # the diagnosis is best effort; the caller reports the first
        return [f"(the assignment could not be read: {err})"]
    return [
        f"{n.op_type} {n.name!r}"
        for part in sess.get_provider_graph_assignment_info()
        if part.ep_name != EP_NAME
        for n in part.get_nodes()
    ]


class HtpSession:
    """A QDQ (or EPContext) model on the HTP, nothing on the CPU but the graph's input Q and
    output DQ (``offload_graph_io_quantization``, the EP's default).

    ``model`` as a path stays a path when no ``shape`` is given: an EPContext model names its
    context binary relative to itself, so it must be loaded by path.
    """

    def __init__(
        self,
        model: onnx.ModelProto | Path,
        shape: Sequence[int] | None = None,
        config: SessionConfig = SessionConfig(),
    ) -> None:
        ort = _runtime()
        if shape is not None:
            proto = onnx.load(str(model)) if isinstance(model, Path) else model
            model = make_static(proto, shape)
        source = str(model) if isinstance(model, Path) else model.SerializeToString()
        try:
            self.session = ort.InferenceSession(source, sess_options=_options(config, False))
        except _session_errors() as err:
            nodes = fallen_back(source, config)
            listed = "\n  ".join(nodes[:50]) or "(none reported)"
            raise HtpFallbackError(
                f"the model does not run wholly on the HTP ({str(err).strip()}).\n"
                f"Nodes the QNN EP did not take ({len(nodes)}):\n  {listed}\n"
                "Replace or remove them, or evaluate with evaluate.backend: embedded."
            ) from None
        self.session.disable_fallback()  # a failed run raises; it never retries on the CPU
        self.input_name: str = self.session.get_inputs()[0].name
        self.output_names: list[str] = [o.name for o in self.session.get_outputs()]

    def run(
        self, x: NDArray[np.float32], names: Sequence[str] | None = None
    ) -> dict[str, NDArray[np.float32]]:
        """Outputs by name (all when ``names`` is None) for one input tensor."""
        wanted = list(names) if names is not None else self.output_names
        outs = self.session.run(wanted, {self.input_name: np.ascontiguousarray(x, np.float32)})
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(wanted, outs, strict=True)}
