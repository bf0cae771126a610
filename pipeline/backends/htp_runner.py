"""The QNN HTP as a backend of the seam (:mod:`pipeline.backends.base`): QDQ models on the HTP
over many images, cached per image, in parallel processes.

:meth:`HtpBackend.prepare` exports ``(view, enc)`` as a QDQ model (:func:`export_qdq`, no
calibration) with the tensors asked for exposed as extra graph outputs
(:func:`with_kept_outputs`: the DequantizeLinear outputs of kept tensors, the comparable points
of a per-layer comparison), and returns an :class:`HtpModel`. The deployable model (without the
extra outputs) is :attr:`HtpModel.deployable`; its sha256 is what metrics name.

A result is cached under ``<cache>/htp/<key>.npz`` with ``key = sha256(input tensor bytes, its
shape, the running model's sha256, the backend versions, the provider options)``, so a rerun
with the same images, model and onnxruntime-qnn runs nothing, and any change runs again. Every
output that is a DequantizeLinear of an activation is stored as its integers (uint8/uint16)
and dequantized on reading exactly as DequantizeLinear does (float32 ``(q - zp) * scale``), so
a cached per-layer run costs a quarter of its float size. The emulator is single-image and
CPU-bound (about 1 s per 320x256 image here): ``workers`` processes each hold one session.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray

from pipeline.atomic import write_bytes
from pipeline.backends.base import Provenance, Tensors
from pipeline.backends.qnn_htp import BACKEND, HtpSession, SessionConfig, versions
from pipeline.graph.view import ModelView
from pipeline.quantization.encoding import RoundMode
from pipeline.quantization.encodings import Encodings
from pipeline.quantization.qdq import export_qdq, with_kept_outputs
from pipeline.quantization.qdq_check import read_back

Outputs = dict[str, NDArray[np.float32]]
Arrays = dict[str, NDArray[np.generic]]  # one image's outputs as stored (see compact)
# output name -> (float32 scale, zero point, integer dtype) of the DequantizeLinear producing it
Grids = dict[str, tuple[np.float32, int, str]]

_worker: tuple[HtpSession, Grids] | None = None


def _grids(model: onnx.ModelProto) -> Grids:
    outputs = {o.name for o in model.graph.output}
    return {
        name: (np.float32(q[0].scale), q[0].zero_point, q[0].dtype)
        for name, q in read_back(model).items()
        if name in outputs and len(q) == 1 and q[0].dtype in ("uint8", "uint16")
    }


def compact(outs: Mapping[str, NDArray[np.float32]], grids: Grids) -> Arrays:
    """Outputs as stored: ``q:<name>`` integers where the dequantization reproduces the float
    exactly, else ``f:<name>`` float32."""
    out: Arrays = {}
    for name, x in outs.items():
        g = grids.get(name)
        if g is not None:
            scale, zp, dtype = g
            q = np.rint(x.astype(np.float64) / float(scale)) + zp
            info = np.iinfo(np.dtype(dtype))
            ints = np.clip(q, info.min, info.max).astype(dtype)
            if np.array_equal(dequantize(ints, g), x):
                out[f"q:{name}"] = ints
                continue
        out[f"f:{name}"] = np.asarray(x, np.float32)
    return out


def dequantize(ints: NDArray[np.generic], grid: tuple[np.float32, int, str]) -> NDArray[np.float32]:
    """DequantizeLinear's arithmetic: float32 ``(q - zero_point) * scale``."""
    scale, zp, _ = grid
    return (ints.astype(np.int32) - np.int32(zp)).astype(np.float32) * scale


@dataclass(frozen=True)
class Stored(Mapping[str, NDArray[np.float32]]):
    """One image's outputs, kept compact; each tensor dequantized when read."""

    arrays: Mapping[str, NDArray[np.generic]]
    grids: Grids = field(repr=False)

    def __getitem__(self, name: str) -> NDArray[np.float32]:
        if f"q:{name}" in self.arrays:
            return dequantize(self.arrays[f"q:{name}"], self.grids[name])
        return np.asarray(self.arrays[f"f:{name}"], np.float32)

    def __iter__(self) -> Iterator[str]:
        return (k[2:] for k in self.arrays)

    def __len__(self) -> int:
        return len(self.arrays)


def _init_worker(model: bytes, shape: tuple[int, ...], options: dict[str, str]) -> None:
    global _worker
    proto = onnx.load_from_string(model)
    _worker = (HtpSession(proto, shape, SessionConfig(options, threads=1)), _grids(proto))


def _run_in_worker(x: NDArray[np.float32]) -> Arrays:
    assert _worker is not None, "worker not initialised"
    session, grids = _worker
    return compact(session.run(x), grids)


@dataclass(frozen=True)
class HtpConfig:
    """How models run on the HTP: the static input shape (from the tensors params), the cache
    root (``paths.cache``; None: no cache), processes, QNN provider options, and the round
    mode weights are quantized with on export (``quantize.round_mode``)."""

    shape: tuple[int, ...]
    cache: Path | None = None
    workers: int = 1
    provider_options: Mapping[str, str] = field(default_factory=dict)
    round_mode: RoundMode = "half_away"


class HtpModel:
    """A QDQ model on the HTP (a :class:`pipeline.backends.base.QuantizedModel`): ``run`` for
    one input, ``run_many`` for many (cached, in parallel)."""

    def __init__(self, model: onnx.ModelProto, deployable: bytes, config: HtpConfig) -> None:
        self.config = config
        self.model_bytes = model.SerializeToString()
        self.model_sha256 = hashlib.sha256(self.model_bytes).hexdigest()
        self.deployable = deployable  # the QDQ model without the extra outputs
        self.deployable_sha256 = hashlib.sha256(deployable).hexdigest()
        self.grids = _grids(model)
        self.cache = config.cache / "htp" if config.cache is not None else None
        opts = dict(config.provider_options)
        salt = json.dumps([self.model_sha256, versions().as_dict(), opts], sort_keys=True)
        self._salt = salt.encode()
        self._session: HtpSession | None = None

    def _key(self, x: NDArray[np.float32]) -> str:
        h = hashlib.sha256(self._salt)
        h.update(str(x.shape).encode())
        h.update(np.ascontiguousarray(x, np.float32).tobytes())
        return h.hexdigest()

    def _load(self, key: str) -> Stored | None:
        if self.cache is None or not (self.cache / f"{key}.npz").is_file():
            return None
        with np.load(self.cache / f"{key}.npz") as z:
            return Stored({k: z[k] for k in z.files}, self.grids)

    def _store(self, key: str, arrays: Mapping[str, NDArray[np.generic]]) -> Stored:
        if self.cache is not None:
            buf = io.BytesIO()
            np.savez(buf, allow_pickle=False, **arrays)
            write_bytes(self.cache / f"{key}.npz", buf.getvalue())
        return Stored(arrays, self.grids)

    def run(self, x: NDArray[np.float32]) -> Tensors:
        return self.run_many([x], lambda n: None)[0]

    def run_many(
        self, images: Sequence[NDArray[np.float32]], progress: Callable[[int], None]
    ) -> list[Tensors]:
        """Every output of every image, in order; cached ones are read, the rest run."""
        keys = [self._key(x) for x in images]
        results: list[Stored | None] = [self._load(k) for k in keys]
        progress(sum(r is not None for r in results))
        todo = [i for i, r in enumerate(results) if r is None]
        for i, arrays in zip(todo, self._run([images[i] for i in todo], progress), strict=True):
            results[i] = self._store(keys[i], arrays)
        return [r for r in results if r is not None]

    def _run(
        self, xs: list[NDArray[np.float32]], progress: Callable[[int], None]
    ) -> Iterator[Arrays]:
        cfg = self.config
        if not xs:
            return
        if cfg.workers == 1 or len(xs) == 1:
            if self._session is None:
                proto = onnx.load_from_string(self.model_bytes)
                options = SessionConfig(dict(cfg.provider_options))
                self._session = HtpSession(proto, cfg.shape, options)
            for x in xs:
                yield compact(self._session.run(x), self.grids)
                progress(1)
            return
        ctx = multiprocessing.get_context("spawn")  # onnxruntime's threads do not survive fork
        init = (self.model_bytes, cfg.shape, dict(cfg.provider_options))
        workers = min(cfg.workers, len(xs))
        with ProcessPoolExecutor(workers, ctx, initializer=_init_worker, initargs=init) as pool:
            for arrays in pool.map(_run_in_worker, xs):
                yield arrays
                progress(1)


class HtpBackend:
    """Qualcomm's HTP behind the seam: ``prepare`` exports the QDQ model of ``(view, enc)``."""

    name = BACKEND

    def __init__(self, config: HtpConfig) -> None:
        self.config = config

    def versions(self) -> dict[str, str]:
        return versions().as_dict()

    def provenance(self) -> Provenance:
        return Provenance(self.name, tuple(self.versions().items()))

    def prepare(self, view: ModelView, enc: Encodings, tensors: Sequence[str]) -> HtpModel:
        """The QDQ model of ``view`` under ``enc`` returning its outputs and ``tensors`` (the
        kept ones with an activation encoding; the graph input is not exposed)."""
        qdq = export_qdq(view, enc, self.config.round_mode)
        deployable = qdq.SerializeToString()
        exposed = [t for t in tensors if t in enc.activations and t != view.input_name]
        return HtpModel(with_kept_outputs(qdq, exposed), deployable, self.config)

    def open(self, qdq_model: Path) -> HtpModel:
        """An already exported QDQ model, as it stands."""
        data = qdq_model.read_bytes()
        return HtpModel(onnx.load_from_string(data), data, self.config)
