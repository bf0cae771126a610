"""Ingest and the coverage check on a Dask cluster give exactly the local results."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.analysis import coverage
from pipeline.calibration.collect import Calibrator
from pipeline.data.ingest import ingest
from pipeline.data.tensors import preprocess, write_raw
from pipeline.engine import map_ordered
from pipeline.graph.load import load_view
from pipeline.params import ComputeParams, IngestParams, QuantizeParams, TensorsParams
from pipeline.quantization import encodings_json

distributed = pytest.importorskip("distributed")

TWO_WORKERS = ComputeParams(engine="dask", workers=2)


@pytest.fixture(scope="module")
def cluster():
    """An already running cluster, as a team's would be: reached by its scheduler address."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    ) as c:
        yield c


def test_map_ordered_keeps_input_order_on_every_engine(cluster):
    items = list(range(23))
    want = [abs(x - 11) for x in items]
    assert map_ordered(abs, [x - 11 for x in items], ComputeParams(), 2) == want
    remote = ComputeParams(engine="dask", scheduler=cluster.scheduler_address)
    assert map_ordered(abs, [x - 11 for x in items], remote) == want


def test_ingest_on_a_local_cluster_equals_local_processes(tmp_path, photos):
    root = tmp_path / "datasets"
    (root / "generic").mkdir(parents=True)
    for p in photos[:6]:
        shutil.copy2(p, root / "generic" / p.name)
    (root / "generic" / "broken.jpg").write_bytes(photos[0].read_bytes()[:900])
    (root / "generic" / "png_named.jpg").write_bytes(
        (root / "generic" / photos[0].name).read_bytes()
    )
    p = IngestParams(workers=2)
    local = ingest(root, p, tmp_path / "cache-local")
    on_dask = ingest(root, p, tmp_path / "cache-dask", TWO_WORKERS)
    assert on_dask.table.equals(local.table)
    assert on_dask.decoded + on_dask.cached == 8  # same bytes twice: one may come from the cache
    rows = {r["path"]: r for r in on_dask.table.to_pylist()}
    assert rows["generic/broken.jpg"]["status"] == "quarantined"
    assert "extension .jpg but content is" in rows["generic/png_named.jpg"]["reason"]


def test_coverage_on_a_cluster_equals_local(tmp_path, centerface, photos, cluster):
    tp = TensorsParams(height=128, width=160, layout="NHWC")
    view = load_view(centerface)
    raws = []
    for i, p in enumerate(photos[:3]):
        from PIL import Image

        with Image.open(p) as im:
            raws.append(tmp_path / f"{i}.raw")
            write_raw(raws[-1], preprocess(im, tp))
    calib = Calibrator(view, tp, QuantizeParams())
    enc_path = tmp_path / "encodings.json"
    enc = calib.compute_data(calib.collect_data(raws, histograms=False))
    enc_path.write_text(__import__("json").dumps(encodings_json.to_1_0_0(enc, {})))
    jobs = [coverage.ImageJob(Path(centerface), True, enc_path, tp, Path(p)) for p in photos[2:6]]
    remote = ComputeParams(engine="dask", scheduler=cluster.scheduler_address)
    merged = {}
    for name, cp in (("local", ComputeParams()), ("dask", remote)):
        cov = coverage.Coverage()
        for image in map_ordered(coverage.image_coverage, jobs, cp, 1):
            cov.merge(image)
        merged[name] = cov
    assert merged["dask"] == merged["local"]
    assert merged["local"].images == 4 and len(merged["local"].tensors) > 50
    assert any(a.clipped for a in merged["local"].tensors.values())  # photos 3-5 are unseen


def test_unreachable_scheduler_is_a_clear_error():
    from pipeline.errors import ParamsError

    with pytest.raises(ParamsError, match="cannot reach the Dask scheduler"):
        map_ordered(abs, [1], ComputeParams(engine="dask", scheduler="tcp://127.0.0.1:9"))
