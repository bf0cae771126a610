"""The QDQ model on the HTP over many images: cached per image, in parallel processes.

A result is cached under ``<cache>/htp/<key>.npz`` with ``key = sha256(input tensor bytes,
its shape, the QDQ model's sha256, the backend versions, the provider options)``, so a rerun
with the same images, model and onnxruntime-qnn runs nothing, and any change runs again. The
emulator is single-image and CPU-bound (about 1 s per 320x256 image here): ``workers``
processes each hold one session.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pipeline.atomic import write_bytes
from pipeline.backends.qnn_htp import BACKEND, HtpSession, SessionConfig, versions
from pipeline.graph.load import sha256_file

Outputs = dict[str, NDArray[np.float32]]

_worker_session: HtpSession | None = None


def _init_worker(model: str, shape: tuple[int, ...], options: dict[str, str]) -> None:
    global _worker_session
    _worker_session = HtpSession(Path(model), shape, SessionConfig(options, threads=1))


def _run_in_worker(x: NDArray[np.float32]) -> Outputs:
    assert _worker_session is not None, "worker not initialised"
    return _worker_session.run(x)


class HtpBackend:
    """``run_images`` for one QDQ model at one static input shape on the HTP."""

    name = BACKEND

    def __init__(
        self,
        qdq_model: Path,
        shape: tuple[int, ...],
        cache: Path | None = None,
        workers: int = 1,
        provider_options: dict[str, str] | None = None,
    ) -> None:
        self.qdq_model, self.shape, self.workers = qdq_model, shape, max(1, workers)
        self.cache = cache / "htp" if cache is not None else None
        self.options = dict(provider_options or {})
        self.model_sha256 = sha256_file(qdq_model)
        salt = json.dumps([self.model_sha256, self.versions(), self.options], sort_keys=True)
        self._salt = salt.encode()

    def versions(self) -> dict[str, str]:
        return versions().as_dict()

    def _key(self, x: NDArray[np.float32]) -> str:
        h = hashlib.sha256(self._salt)
        h.update(str(x.shape).encode())
        h.update(np.ascontiguousarray(x, np.float32).tobytes())
        return h.hexdigest()

    def _load(self, key: str) -> Outputs | None:
        if self.cache is None or not (self.cache / f"{key}.npz").is_file():
            return None
        with np.load(self.cache / f"{key}.npz") as z:
            return {k: z[k] for k in z.files}

    def _store(self, key: str, outs: Outputs) -> None:
        if self.cache is not None:
            buf = io.BytesIO()
            np.savez(buf, allow_pickle=False, **outs)
            write_bytes(self.cache / f"{key}.npz", buf.getvalue())

    def run_images(
        self, images: Sequence[NDArray[np.float32]], progress: Callable[[int], None]
    ) -> list[Outputs]:
        """Every output of every image, in order; cached ones are read, the rest run."""
        keys = [self._key(x) for x in images]
        results = [self._load(k) for k in keys]
        progress(sum(r is not None for r in results))
        todo = [i for i, r in enumerate(results) if r is None]
        for i, outs in zip(todo, self._run([images[i] for i in todo], progress), strict=True):
            self._store(keys[i], outs)
            results[i] = outs
        return [r for r in results if r is not None]

    def _run(self, xs: list[NDArray[np.float32]], progress: Callable[[int], None]) -> list[Outputs]:
        if not xs:
            return []
        if self.workers == 1 or len(xs) == 1:
            session = HtpSession(self.qdq_model, self.shape, SessionConfig(self.options))
            out = []
            for x in xs:
                out.append(session.run(x))
                progress(1)
            return out
        ctx = multiprocessing.get_context("spawn")  # onnxruntime's threads do not survive fork
        init = (str(self.qdq_model), self.shape, self.options)
        workers = min(self.workers, len(xs))
        with ProcessPoolExecutor(workers, ctx, initializer=_init_worker, initargs=init) as pool:
            done = []
            for outs in pool.map(_run_in_worker, xs):
                done.append(outs)
                progress(1)
        return done
