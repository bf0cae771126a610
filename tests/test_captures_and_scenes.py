"""fieldcal captures add, scenes, scenes set, curate --dry-run."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.data.captures import NewSession, add_session
from pipeline.errors import DataError
from pipeline.params import IngestParams


def _jpeg(seed: int, size=(64, 48)) -> bytes:
    a = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    datasets = tmp_path / "datasets"
    (datasets / "generic").mkdir(parents=True)
    (datasets / "generic" / "old.jpg").write_bytes(_jpeg(1))
    src = tmp_path / "card"
    (src / "sub").mkdir(parents=True)
    (src / "a.jpg").write_bytes(_jpeg(2))
    (src / "sub" / "b.jpg").write_bytes(_jpeg(3))
    (src / "copy_of_old.jpg").write_bytes(_jpeg(1))
    (src / "broken.jpg").write_bytes(_jpeg(4)[:300])
    (src / "log.txt").write_text("x")
    os.mkfifo(src / "pipe.jpg")  # opening it would block: must be skipped, never read
    (tmp_path / "params.yaml").write_text("paths: {datasets: datasets, out: out}\n")
    return tmp_path, src


def test_add_session_accounts_for_every_file_and_keeps_bytes(setup):
    root, src = setup
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    rep = add_session(
        src,
        root / "datasets",
        NewSession("drive_01", scene="night", vehicle="car9"),
        IngestParams(workers=1),
        4,
    )
    assert sorted(rep.added) == ["a.jpg", "sub/b.jpg"]
    assert rep.duplicates == [("copy_of_old.jpg", "generic/old.jpg")]
    assert [q[0] for q in rep.quarantined] == ["broken.jpg"]
    assert dict(rep.skipped) == {
        "log.txt": "extension '.txt' is not an image",
        "pipe.jpg": "not a regular file (FIFO, socket or device)",
    }
    dest = root / "datasets" / "vehicle" / "drive_01"
    assert (dest / "a.jpg").read_bytes() == (src / "a.jpg").read_bytes()
    assert json.loads((dest / "sidecar.json").read_text()) == {"scene": "night", "vehicle": "car9"}
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before  # source untouched
    assert not list((root / "datasets" / "vehicle").glob(".*incoming"))


@pytest.mark.parametrize("name", ["../up", "a/b", "/abs", ".hidden", "x" * 101, "a..b"])
def test_session_names_cannot_escape(setup, name):
    root, src = setup
    with pytest.raises(DataError, match="not allowed"):
        add_session(src, root / "datasets", NewSession(name), IngestParams(workers=1), 4)


def test_existing_session_is_never_overwritten(setup):
    root, src = setup
    add_session(src, root / "datasets", NewSession("s1"), IngestParams(workers=1), 4)
    before = sorted((root / "datasets/vehicle/s1").rglob("*"))
    with pytest.raises(DataError, match="never overwrites"):
        add_session(src, root / "datasets", NewSession("s1"), IngestParams(workers=1), 4)
    assert sorted((root / "datasets/vehicle/s1").rglob("*")) == before


def test_cli_add_then_scenes_set_then_curate_dry_run(setup):
    root, src = setup
    run = CliRunner().invoke
    res = run(
        app, ["captures", "add", str(src), "--session", "s2", "--no-track", "--root", str(root)]
    )
    assert res.exit_code == 0, res.output
    assert (
        "2 added" in res.output and "1 duplicates" in res.output and "1 quarantined" in res.output
    )
    res = run(app, ["scenes", "set", "vehicle/s2/sub/*", "tunnel", "--root", str(root)])
    assert res.exit_code == 0 and "1 image(s) set to scene 'tunnel'" in res.output
    assert "warning: scene 'tunnel' is new to this project (known: backlight, day, night" in (
        res.output
    )
    side = json.loads((root / "datasets/vehicle/s2/sidecar.json").read_text())
    assert side["images"] == {"sub/b.jpg": {"scene": "tunnel"}}  # the session's sidecar
    res = run(app, ["scenes", "set", "vehicle/s2/a.jpg", "tunnel", "--root", str(root)])
    assert "warning" not in res.output  # a sidecar declares it now
    bad = run(app, ["scenes", "set", "../*", "day", "--root", str(root)])
    assert bad.exit_code == 1 and "inside datasets" in bad.output
    # manifest, then a dry run that writes nothing
    from pipeline.atomic import write_parquet
    from pipeline.data.ingest import ingest

    write_parquet(
        root / "out/ingest/manifest.parquet",
        ingest(root / "datasets", IngestParams(workers=1)).table,
    )
    res = run(app, ["scenes", "--root", str(root)])
    assert res.exit_code == 0 and "tunnel" in res.output
    res = run(app, ["curate", "--dry-run", "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert "calibration" in res.output and not (root / "out/curate").exists()


def test_scene_option_is_blamed_not_params(setup):
    root, src = setup
    res = CliRunner().invoke(
        app,
        [
            "captures",
            "add",
            str(src),
            "--session",
            "s3",
            "--scene",
            "Night Time",
            "--no-track",
            "--root",
            str(root),
        ],
    )
    assert res.exit_code == 1
    assert "--scene 'Night Time' is not a scene name" in res.output
    assert "'night_time'" in res.output and "params.yaml" not in res.output
    assert not (root / "datasets/vehicle/s3").exists()


def test_hostile_source_entries_are_skipped_with_reasons(setup):
    """Entries that would break DVC or block a read never enter datasets/."""
    root, src = setup
    os.symlink(src / "a.jpg", src / "link.jpg")
    os.symlink(src / "nowhere.jpg", src / "broken_link.jpg")
    with open(os.fsencode(src) + b"/bad\xff.jpg", "wb") as fh:
        fh.write(_jpeg(5))
    rep = add_session(src, root / "datasets", NewSession("s4"), IngestParams(workers=1), 4)
    skipped = dict(rep.skipped)
    assert (
        skipped["link.jpg"] == skipped["broken_link.jpg"] == "symbolic link: copy the file itself"
    )
    assert "not valid UTF-8" in skipped["bad\udcff.jpg"]
    assert sorted(rep.added) == ["a.jpg", "sub/b.jpg"]
