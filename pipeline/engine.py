"""Where per-item work runs: processes on this machine, or an existing Dask cluster.

Ingest (hash + decode per file) and the coverage check (preprocess + float model per image) map
one picklable function over their items and merge the results in input order, so the engine
never changes a result: ``compute.engine: dask`` gives byte-identical manifests and coverage
verdicts (tests/test_engine.py).

With ``compute.scheduler`` set (``tcp://host:8786``), work goes to that cluster; its workers
must see the project at the same absolute path (a shared file system) and have fieldcal
installed in the same version. Without it, ``dask`` starts a local cluster of
``compute.workers`` processes for the call, which is how the tests run it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from pipeline.errors import ParamsError
from pipeline.params import ComputeParams

T = TypeVar("T")
R = TypeVar("R")


def map_ordered(
    fn: Callable[[T], R],
    items: Sequence[T],
    cp: ComputeParams,
    local_workers: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[R]:
    """``[fn(x) for x in items]`` on the configured engine, results in input order.

    ``local_workers``: processes for the local engine (0 = one per core, 1 = in this process).
    ``progress(n)`` is called as results arrive (on a cluster: once, at the end).
    """
    if not items:
        return []
    advance = progress or (lambda n: None)
    if cp.engine == "dask":
        out = _dask_map(fn, items, cp)
        advance(len(out))
        return out
    workers = local_workers or os.cpu_count() or 1
    if workers > 1 and len(items) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunk = max(1, len(items) // (4 * workers))
            return [_advanced(r, advance) for r in pool.map(fn, items, chunksize=chunk)]
    return [_advanced(fn(x), advance) for x in items]


def _advanced(result: R, advance: Callable[[int], None]) -> R:
    advance(1)
    return result


def _dask_map(fn: Callable[[T], R], items: Sequence[T], cp: ComputeParams) -> list[R]:
    try:
        from distributed import Client, LocalCluster  # untyped library
    except ImportError:
        raise ParamsError(
            "compute.engine is dask, but dask.distributed is not installed; install "
            "fieldcal's 'distributed' extra (pip install 'fieldcal[distributed]')"
        ) from None
    if cp.scheduler is not None:
        try:
            client = Client(cp.scheduler, timeout="30s")  # type: ignore[no-untyped-call]
        except OSError as err:
            raise ParamsError(
                f"compute.scheduler {cp.scheduler!r}: cannot reach the Dask scheduler ({err})"
            ) from None
        with client:
            return _gather(client, fn, items)
    workers = cp.workers or os.cpu_count() or 1
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=40,  # logging.ERROR
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        return _gather(client, fn, items)


def _gather(client: object, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    futures = client.map(fn, list(items), pure=False)  # type: ignore[attr-defined]
    return list(client.gather(futures))  # type: ignore[attr-defined]
