"""Ingest manifests built in memory for the curation tests: every image ok, one scene."""

from __future__ import annotations

import pyarrow as pa

from pipeline.data.ingest import MANIFEST_SCHEMA


def day_manifest(counts: dict[str, int]) -> pa.Table:
    """``counts[source]`` ok day images per source (vehicle images in session ``s``), with
    distinct hashes, as the ingest stage writes them."""
    rows = [
        {
            "path": f"{source}/day{i}.jpg",
            "sha256": f"{source}{i:04d}".ljust(64, "0"),
            "source": source,
            "session": "s" if source == "vehicle" else "",
            "status": "ok",
            "reason": "",
            "scene": "day",
        }
        for source, n in counts.items()
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
