"""fieldcal doctor: entries DVC cannot hash are found without opening them, moved aside with a
record, and moved back."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.data import doctor
from pipeline.data.ingest import ingest
from pipeline.errors import ParamsError
from pipeline.params import IngestParams, parse_params
from tests.hostile import hostile_entries


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (tmp_path / "outside").mkdir()
    return tmp_path / "datasets", hostile_entries(tmp_path / "datasets", tmp_path / "outside")


def _listing(root: Path) -> dict[bytes, int]:
    """Every entry under ``root`` (bytes path -> file type bits), without following links."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, os.fsencode(root))] = stat.S_IFMT(os.lstat(p).st_mode)
    return out


def test_scan_finds_each_kind_and_nothing_else(tree):
    datasets, kinds = tree
    found = doctor.scan(datasets)
    assert {f.path: f.kind for f in found} == kinds


def test_quarantine_then_restore_gives_back_every_entry(tree):
    datasets, kinds = tree
    before = _listing(datasets)
    moved = doctor.quarantine(datasets, doctor.scan(datasets))
    assert {q.path for q in moved} == set(kinds)
    assert doctor.scan(datasets) == []  # what is left, DVC can hash
    assert {q.path: q.kind for q in doctor.read_record(datasets)} == kinds
    assert (datasets / doctor.QUARANTINE / "vehicle/s1/pipe.jpg").is_fifo()
    # ingest skips the quarantine folder (hidden) and sees only what DVC can hash
    rows = ingest(datasets, IngestParams(workers=1)).table.to_pylist()
    assert sorted(r["path"] for r in rows) == ["vehicle/s1/inside_link.png", "vehicle/s1/ok.png"]
    back = doctor.restore(datasets)
    assert {q.path for q in back.restored} == set(kinds) and back.kept == []
    after = _listing(datasets)
    quarantine = os.fsencode(doctor.QUARANTINE)
    assert {k: v for k, v in after.items() if not k.startswith(quarantine)} == before
    assert doctor.read_record(datasets) == []


def test_restore_never_overwrites(tree):
    datasets, _ = tree
    doctor.quarantine(datasets, doctor.scan(datasets))
    (datasets / "vehicle/s1/pipe.jpg").write_bytes(b"a new file under the same name")
    back = doctor.restore(datasets)
    assert [e.path for e, _ in back.kept] == ["vehicle/s1/pipe.jpg"]
    assert "exists again" in back.kept[0][1]
    assert (datasets / "vehicle/s1/pipe.jpg").read_bytes() == b"a new file under the same name"
    assert [e.path for e in doctor.read_record(datasets)] == ["vehicle/s1/pipe.jpg"]


def test_second_quarantine_of_the_same_name_keeps_both(tree):
    datasets, _ = tree
    doctor.quarantine(datasets, doctor.scan(datasets))
    os.mkfifo(datasets / "vehicle/s1/pipe.jpg")
    again = doctor.quarantine(datasets, doctor.scan(datasets))
    assert [q.stored for q in again] == ["vehicle/s1/pipe.jpg~1"]


def test_allowed_root_admits_links_to_a_share(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "a.png").write_bytes(b"x")
    s = tmp_path / "datasets" / "generic"
    s.mkdir(parents=True)
    os.symlink(share / "a.png", s / "a.png")
    assert [f.kind for f in doctor.scan(tmp_path / "datasets")] == ["link_outside_tree"]
    assert doctor.scan(tmp_path / "datasets", [share]) == []


def test_allowed_roots_must_be_existing_folders(tmp_path):
    with pytest.raises(ParamsError, match=r"ingest\.allowed_roots.*not an existing folder"):
        parse_params({"ingest": {"allowed_roots": [str(tmp_path / "not_mounted")]}})


def test_cli_doctor_check_fix_restore(tree, tmp_path):
    datasets, kinds = tree
    (tmp_path / "params.yaml").write_text(f"paths: {{datasets: {datasets}}}\n")
    run = CliRunner().invoke
    res = run(app, ["doctor", "--root", str(tmp_path)])
    assert res.exit_code == 1
    assert f"{len(kinds)} entries DVC cannot hash; run `fieldcal doctor --fix`" in res.output
    assert "found        vehicle/s1/bad\\xff.png: name_not_utf8: " in res.output
    res = run(app, ["doctor", "--fix", "--root", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert res.output.count("quarantined  ") == len(kinds)
    assert doctor.DVCIGNORE_LINE in (tmp_path / ".dvcignore").read_text().splitlines()
    assert run(app, ["doctor", "--root", str(tmp_path)]).exit_code == 0
    res = run(app, ["doctor", "--restore", "--root", str(tmp_path)])
    assert res.output.count("restored     ") == len(kinds)
    assert {f.path for f in doctor.scan(datasets)} == set(kinds)
