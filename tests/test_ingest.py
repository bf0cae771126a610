"""Ingest over a corpus of good, odd and hostile files generated here."""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.ingest import MANIFEST_SCHEMA, ingest
from pipeline.errors import DataError
from pipeline.params import IngestParams
from tests import unprivileged


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def _photo(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB")


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    """datasets/ with one file per case -> {relative path: (status, reason fragment)}."""
    root = tmp_path / "datasets"
    s = root / "vehicle" / "s1"
    s.mkdir(parents=True)
    outside = tmp_path / "outside.png"
    outside.write_bytes(_png(_photo()))
    ok = _png(_photo())
    files: dict[str, bytes] = {
        "ok.png": ok,
        "copy_of_ok.png": ok,
        "gray.png": _png(_photo().convert("L")),
        "la.png": _png(_photo().convert("LA")),
        "palette.png": _png(_photo().convert("P")),
        "cmyk.jpg": _jpeg(_photo().convert("CMYK")),
        "sixteen.png": _png(Image.fromarray(np.full((16, 16), 40000, np.uint16))),
        "empty.jpg": b"",
        "truncated.jpg": _jpeg(_photo(256, 256), quality=95)[:2000],
        "truncated.png": _png(_photo(256, 256))[:3000],
        "text.jpg": b"this is not an image\n" * 20,
        "jpeg_named.png": _jpeg(_photo()),
        "notes.txt": b"driver notes",
        "tiny.png": _png(_photo(4, 4)),
        "bomb.png": _png(Image.new("L", (400, 400))),
    }
    gif = io.BytesIO()
    _photo().convert("P").save(
        gif, "GIF", save_all=True, append_images=[_photo(seed=1).convert("P")]
    )
    files["anim.gif"] = gif.getvalue()
    tif = io.BytesIO()
    _photo().save(tif, "TIFF", save_all=True, append_images=[_photo(seed=2)])
    files["multi.tif"] = tif.getvalue()
    for name, data in files.items():
        (s / name).write_bytes(data)
    os.symlink(tmp_path / "nowhere.png", s / "broken.png")
    os.symlink(outside, s / "escape.png")
    bad_name = os.fsencode(s) + b"/bad\xff.png"
    with open(bad_name, "wb") as fh:
        fh.write(_png(_photo(seed=3)))
    os.mkdir(os.fsencode(s) + b"/dir\xfe")
    with open(os.fsencode(s) + b"/dir\xfe/inside.png", "wb") as fh:
        fh.write(_png(_photo(seed=4)))
    os.symlink("loop.png", s / "loop.png")
    (tmp_path / "outside_dir").mkdir()
    (tmp_path / "outside_dir" / "x.png").write_bytes(_png(_photo(seed=5)))
    os.symlink(tmp_path / "outside_dir", s / "escape_dir")
    (s / "sub").mkdir()
    (s / "sub" / "in_sub.png").write_bytes(_png(_photo(seed=6)))
    os.symlink("sub", s / "link_to_sub")
    os.symlink("gray.png", s / "link_to_gray.png")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(s / "sock.png"))
    sock.close()
    expect = {
        "ok.png": ("ok", ""),
        "copy_of_ok.png": ("ok", ""),
        "gray.png": ("ok", ""),
        "la.png": ("ok", ""),
        "palette.png": ("ok", ""),
        "cmyk.jpg": ("ok", ""),
        "sixteen.png": ("ok", ""),
        "empty.jpg": ("quarantined", "empty file"),
        "truncated.jpg": ("quarantined", "cannot decode"),
        "truncated.png": ("quarantined", "cannot decode"),
        "text.jpg": ("quarantined", "not an image"),
        "jpeg_named.png": ("ok", "extension .png but content is JPEG"),
        "notes.txt": ("skipped", "extension '.txt'"),
        "tiny.png": ("quarantined", "at least 8x8"),
        "bomb.png": ("quarantined", "decompression bomb"),
        "anim.gif": ("ok", "2 frames"),
        "multi.tif": ("ok", "2 frames"),
        "broken.png": ("quarantined", "broken_link: broken symbolic link"),
        "escape.png": ("quarantined", "link_outside_tree: "),
        "bad\\xff.png": ("quarantined", "name_not_utf8: file name is not valid UTF-8"),
        "dir\\xfe": ("quarantined", "name_not_utf8: "),
        "loop.png": ("quarantined", "link_loop: "),
        "escape_dir": ("quarantined", "link_outside_tree: "),
        "link_to_sub": ("skipped", "symbolic link to a folder is not followed"),
        "link_to_gray.png": ("ok", ""),
        "sub/in_sub.png": ("ok", ""),
        "sock.png": ("quarantined", "socket: "),
    }
    if os.geteuid() == 0:  # creating a device file needs root (CAP_MKNOD)
        os.mknod(s / "null.png", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        expect["null.png"] = ("quarantined", "device: a device file")
    return root, {f"vehicle/s1/{k}": v for k, v in expect.items()}


def test_every_file_gets_a_row_with_a_specific_reason(corpus, tmp_path):
    root, expect = corpus
    params = IngestParams(max_image_pixels=100_000)  # bomb.png has 160,000 pixels
    result = ingest(root, params, tmp_path / "cache")
    assert result.table.schema.equals(MANIFEST_SCHEMA, check_metadata=True)
    rows = {r["path"]: r for r in result.table.to_pylist()}
    assert set(rows) == set(expect)
    for path, (status, fragment) in expect.items():
        assert rows[path]["status"] == status, (path, rows[path]["reason"])
        assert fragment in rows[path]["reason"], (path, rows[path]["reason"])
    # the first in path order is the original, later copies point at it
    assert rows["vehicle/s1/ok.png"]["duplicate_of"] == "vehicle/s1/copy_of_ok.png"
    assert rows["vehicle/s1/copy_of_ok.png"]["duplicate_of"] is None
    assert rows["vehicle/s1/sixteen.png"]["mode"] == "I;16"
    assert rows["vehicle/s1/ok.png"]["session"] == "s1"


def test_ingest_never_modifies_inputs(corpus, tmp_path):
    root, _ = corpus
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    ingest(root, IngestParams(), tmp_path / "cache")
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    assert before == after


def test_cache_decodes_only_new_files_and_recognises_renames(tmp_path):
    root = tmp_path / "datasets" / "generic"
    root.mkdir(parents=True)
    for i in range(4):
        (root / f"{i}.png").write_bytes(_png(_photo(seed=i)))
    cache = tmp_path / "cache"
    first = ingest(root.parent, IngestParams(), cache)
    assert (first.decoded, first.cached) == (4, 0)
    shutil.move(root / "0.png", root / "renamed.png")
    (root / "new.png").write_bytes(_png(_photo(seed=99)))
    second = ingest(root.parent, IngestParams(), cache)
    assert (second.decoded, second.cached) == (1, 4)
    assert second.table.num_rows == 5
    by_sha_1 = {r["sha256"]: r for r in first.table.to_pylist()}
    by_sha_2 = {r["sha256"]: r for r in second.table.to_pylist()}
    for sha, r in by_sha_1.items():
        assert {k: v for k, v in r.items() if k != "path"} == {
            k: v for k, v in by_sha_2[sha].items() if k != "path"
        }


def test_sidecar_scene_wins_and_auto_rule_otherwise(tmp_path):
    s = tmp_path / "datasets" / "vehicle" / "drive"
    s.mkdir(parents=True)
    (s / "dark.png").write_bytes(_png(Image.new("RGB", (32, 32), (5, 5, 5))))
    (s / "tagged.png").write_bytes(_png(Image.new("RGB", (32, 32), (5, 5, 5))))
    (s / "bright.png").write_bytes(_png(Image.new("RGB", (32, 32), (150, 150, 150))))
    (s / "sidecar.json").write_text(
        '{"vehicle": "car", "images": {"tagged.png": {"scene": "tunnel"}}}'
    )
    rows = {
        r["path"].split("/")[-1]: r
        for r in ingest(tmp_path / "datasets", IngestParams()).table.to_pylist()
    }
    assert (rows["tagged.png"]["scene"], rows["tagged.png"]["scene_origin"]) == (
        "tunnel",
        "sidecar",
    )
    assert (rows["dark.png"]["scene"], rows["dark.png"]["scene_origin"]) == (
        "night",
        "auto:luma-v1",
    )
    assert rows["bright.png"]["scene"] == "day"
    assert rows["bright.png"]["vehicle"] == "car"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ('{"vehicel": "x"}', "vehicel: unknown key"),
        ('{"images": {"a.png": {"scene": 3}}}', r"images\.a\.png\.scene"),
    ],
)
def test_bad_sidecar_names_file_and_key(tmp_path, text, match):
    s = tmp_path / "datasets" / "vehicle" / "drive"
    s.mkdir(parents=True)
    (s / "sidecar.json").write_text(text)
    (s / "a.png").write_bytes(_png(_photo()))
    with pytest.raises(DataError, match=match) as info:
        ingest(tmp_path / "datasets", IngestParams())
    assert "sidecar.json" in str(info.value)


def test_missing_datasets_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ingest(tmp_path / "nope", IngestParams())


def test_fifo_is_quarantined_not_opened(tmp_path):
    """Opening a FIFO blocks until a writer appears: ingest must never open one."""
    s = tmp_path / "datasets" / "generic"
    s.mkdir(parents=True)
    (s / "a.png").write_bytes(_png(_photo()))
    os.mkfifo(s / "pipe.jpg")
    os.symlink("pipe.jpg", s / "link_to_pipe.png")
    rows = {r["path"]: r for r in ingest(tmp_path / "datasets", IngestParams()).table.to_pylist()}
    assert rows["generic/a.png"]["status"] == "ok"
    for name in ("generic/pipe.jpg", "generic/link_to_pipe.png"):
        assert rows[name]["status"] == "quarantined"
        assert rows[name]["reason"].startswith("fifo: a FIFO (named pipe)")


def test_unreadable_file_and_folder_are_quarantined():
    """Permissions as an unprivileged user sees them (the check drops root: root reads all)."""
    with unprivileged.shared_tmp() as tmp:
        s = tmp / "datasets" / "generic"
        (s / "locked_dir").mkdir(parents=True)
        (s / "ok.png").write_bytes(_png(_photo()))
        (s / "locked.png").write_bytes(_png(_photo(seed=1)))
        (s / "locked.png").chmod(0)
        (s / "locked_dir" / "inside.png").write_bytes(_png(_photo(seed=2)))
        (s / "locked_dir").chmod(0)
        root = tmp / "datasets"
        rows = unprivileged.call(lambda: ingest(root, IngestParams(workers=1)).table.to_pylist())
    by_path = {r["path"]: (r["status"], r["reason"]) for r in rows}
    assert by_path == {
        "generic/ok.png": ("ok", ""),
        "generic/locked.png": ("quarantined", "unreadable: file is not readable (permissions)"),
        "generic/locked_dir": (
            "quarantined",
            "unreadable_dir: folder cannot be listed (permissions); nothing in it is read",
        ),
    }


def test_doctor_lists_unused_files_with_counts(corpus, tmp_path):
    from typer.testing import CliRunner

    from pipeline.atomic import write_parquet
    from pipeline.cli import app

    root, expect = corpus
    (tmp_path / "params.yaml").write_text(f"paths: {{datasets: {root}, out: {tmp_path / 'out'}}}\n")
    write_parquet(
        tmp_path / "out" / "ingest" / "manifest.parquet",
        ingest(root, IngestParams(max_image_pixels=100_000)).table,
    )
    res = CliRunner().invoke(app, ["doctor", "--root", str(tmp_path)])  # hazards first
    assert res.exit_code == 1 and "`fieldcal doctor --fix`" in res.output
    res = CliRunner().invoke(app, ["doctor", "--fix", "--root", str(tmp_path)])
    assert res.exit_code == 0, res.output
    bad = sum(1 for status, _ in expect.values() if status != "ok")
    assert res.output.rstrip().endswith(f"{bad} file(s) not used")
    assert "quarantined: empty file (0 bytes)" in res.output
