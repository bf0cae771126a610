from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.tensors import (
    format_input_list,
    parse_input_list,
    preprocess,
    raw_size,
    read_raw,
    write_raw,
)
from pipeline.errors import DataError
from pipeline.params import TensorsParams


def _img(w: int, h: int) -> Image.Image:
    a = np.arange(w * h * 3, dtype=np.uint8).reshape(h, w, 3)
    return Image.fromarray(a, "RGB")


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_raw_golden_bytes_and_round_trip(tmp_path, layout):
    p = TensorsParams(height=4, width=4, resize="stretch", layout=layout)
    img = _img(4, 4)  # same size: no resampling, values pass through
    x = preprocess(img, p)
    path = tmp_path / "x.raw"
    write_raw(path, x)
    data = path.read_bytes()
    assert len(data) == raw_size(p) == 4 * 4 * 3 * 4
    hwc = np.asarray(img, np.float32)
    expected = hwc if layout == "NHWC" else hwc.transpose(2, 0, 1)
    assert data == expected.astype("<f4").tobytes()
    back = read_raw(path, p)
    np.testing.assert_array_equal(back[0], hwc.transpose(2, 0, 1))


def test_letterbox_pads_symmetrically_with_black():
    p = TensorsParams(height=8, width=16, layout="NCHW")
    x = preprocess(Image.new("RGB", (8, 8), (200, 100, 50)), p)
    assert x.shape == (1, 3, 8, 16)
    assert (x[0, :, :, :4] == 0).all() and (x[0, :, :, 12:] == 0).all()
    assert (x[0, 0, :, 4:12] == 200).all()


def test_bgr_mean_std():
    p = TensorsParams(
        height=2,
        width=2,
        resize="stretch",
        layout="NHWC",
        color="BGR",
        mean=(1.0, 2.0, 3.0),
        std=(2.0, 2.0, 2.0),
    )
    x = preprocess(Image.new("RGB", (2, 2), (10, 20, 30)), p)
    np.testing.assert_allclose(x[0, 0, 0], [(30 - 1) / 2, (20 - 2) / 2, (10 - 3) / 2])


def test_raw_of_wrong_size_is_a_clear_error(tmp_path):
    (tmp_path / "x.raw").write_bytes(b"\0" * 12)
    with pytest.raises(DataError, match="need 192"):
        read_raw(tmp_path / "x.raw", TensorsParams(height=4, width=4))


def test_input_list_golden():
    single = format_input_list([[("input.1", "out/a.raw")], [("input.1", "out/b.raw")]])
    assert single == "out/a.raw\nout/b.raw\n"
    multi = format_input_list([[("x", "a.raw"), ("y", "b.raw")]])
    assert multi == "x:=a.raw y:=b.raw\n"
    assert parse_input_list("#out1\n" + multi) == [[("x", "a.raw"), ("y", "b.raw")]]


def test_input_list_refuses_spaces():
    with pytest.raises(DataError, match="white space"):
        format_input_list([[("x", "my file.raw")]])


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (4, 2), (255, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    import io

    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    buf.seek(0)
    x = preprocess(
        Image.open(buf), TensorsParams(height=4, width=2, resize="stretch", layout="NHWC")
    )
    assert x.shape == (1, 4, 2, 3)


@pytest.mark.parametrize("mode", ["project", "relative", "list", "absolute"])
def test_input_list_paths_resolve_from_their_anchor(tmp_path, monkeypatch, mode):
    """project (and its old name relative): from the project root; list: from the list's
    folder, so a copy of that folder alone (as `adb push` makes) still resolves; absolute."""
    from pipeline.data.tensors import build_role, parse_input_list

    monkeypatch.chdir(tmp_path)  # the project root, where dvc runs the stage
    (tmp_path / "datasets").mkdir()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / "datasets/a.png")
    rows = [
        {"path": "a.png", "sha256": "ab" * 32, "scene": "day", "source": "generic", "session": "g"}
    ]
    p = TensorsParams(height=8, width=8, list_paths=mode)
    role = Path("out/tensors/calibration")
    index = build_role(rows, "input", role, Path("datasets"), p, None)
    listed = parse_input_list((role / "input_list.txt").read_text())[0][0][1]
    anchor = {"project": tmp_path, "relative": tmp_path, "list": tmp_path / role}.get(mode)
    assert (Path(listed).is_absolute()) == (mode == "absolute")
    assert ((anchor / listed) if anchor else Path(listed)).stat().st_size == 8 * 8 * 3 * 4
    assert (tmp_path / index.column("raw")[0].as_py()).is_file()  # the index: project-relative
    if mode == "list":
        pushed = shutil.copytree(role, tmp_path / "device")
        assert (pushed / listed).is_file()
