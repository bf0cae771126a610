"""DVC stage `ingest`: datasets/ -> out/ingest/manifest.parquet (+ summary.json)."""

from collections import Counter

from pipeline.atomic import write_json, write_parquet
from pipeline.data import ingest
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.stage import run


def main(params: Params) -> None:
    paths = params.paths
    result = ingest.ingest(paths.datasets, params.ingest, paths.cache / "ingest", params.compute)
    out = Layout.of(paths).ingest
    write_parquet(out.manifest, result.table)
    rows = result.table.select(["status", "reason", "scene"]).to_pylist()
    write_json(
        out.summary,
        {
            "files": len(rows),
            "status": dict(sorted(Counter(r["status"] for r in rows).items())),
            "scenes": dict(
                sorted(Counter(r["scene"] for r in rows if r["status"] == "ok").items())
            ),
            "quarantined": sorted({r["reason"] for r in rows if r["status"] == "quarantined"}),
        },
    )
    print(f"ingest: {len(rows)} files, {result.decoded} decoded, {result.cached} from cache")


if __name__ == "__main__":
    run(main)
