"""QNN SDK backend: command construction and the qnn-net-run output reader, on files written here."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from pipeline.backends import qnn_sdk as qnn
from pipeline.errors import DataError, PipelineError
from pipeline.params import QuantizeParams


def test_converter_command_legacy_quantizers():
    argv = qnn.converter_command(
        Path("m.onnx"),
        Path("list.txt"),
        Path("out/m.cpp"),
        QuantizeParams(),
        overrides=Path("enc.json"),
    )
    assert argv[0] == "qnn-onnx-converter"
    pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert pairs["--input_network"] == "m.onnx" and pairs["--input_list"] == "list.txt"
    assert pairs["--act_quantizer"] == "tf" and pairs["--param_quantizer"] == "symmetric"
    assert pairs["--bias_bitwidth"] == "32" and pairs["--act_bitwidth"] == "8"
    assert "--use_per_channel_quantization" in argv
    assert argv[-2:] == ["--quantization_overrides", "enc.json"]


def test_converter_command_percentile_uses_calibration_options_only():
    qp = QuantizeParams(
        activations={"mode": "percentile", "percentile": 99.9, "bitwidth": 16},
        weights={"per_channel": False, "mode": "tf"},
    )
    argv = qnn.converter_command(Path("m.onnx"), Path("l.txt"), Path("o.cpp"), qp)
    assert "--act_quantizer" not in argv and "--param_quantizer" not in argv  # never mixed
    i = argv.index("--percentile_calibration_value")
    assert argv[i + 1] == "99.9"
    assert argv[argv.index("--act_bitwidth") + 1] == "16"
    assert "--use_per_channel_quantization" not in argv


def _options(argv: list[str]) -> dict[str, str]:
    """The quantizer options of a converter argv, flag -> value."""
    prefixes = ("--act_quantizer", "--param_quantizer", "--percentile")
    return {k: v for k, v in itertools.pairwise(argv) if k.startswith(prefixes)}


def test_converter_command_percentile_weights_use_the_calibration_family():
    # percentile weights have no legacy name: both sides move to the calibration options
    qp = QuantizeParams(weights={"per_channel": False, "mode": "percentile", "percentile": 99.5})
    opts = _options(qnn.converter_command(Path("m.onnx"), Path("l.txt"), Path("o.cpp"), qp))
    assert opts == {
        "--act_quantizer_calibration": "min-max",
        "--act_quantizer_schema": "asymmetric",
        "--param_quantizer_calibration": "percentile",
        "--param_quantizer_schema": "asymmetric",
        "--percentile_calibration_value": "99.5",
    }
    # percentile activations keep enhanced weights, as sqnr calibration
    qp = QuantizeParams(
        activations={"mode": "percentile"}, weights={"per_channel": False, "mode": "enhanced"}
    )
    opts = _options(qnn.converter_command(Path("m.onnx"), Path("l.txt"), Path("o.cpp"), qp))
    assert opts["--param_quantizer_calibration"] == "sqnr"


@pytest.mark.parametrize(
    ("weights", "says"),
    [
        ({"per_channel": False, "mode": "adjusted"}, "adjusted"),
        ({"per_channel": False, "mode": "percentile", "percentile": 99.0}, "one --percentile"),
    ],
)
def test_converter_command_refuses_what_qnn_cannot_express(weights, says):
    qp = QuantizeParams(activations={"mode": "percentile", "percentile": 99.9}, weights=weights)
    with pytest.raises(PipelineError, match=says):
        qnn.converter_command(Path("m.onnx"), Path("l.txt"), Path("o.cpp"), qp)


def test_user_strings_stay_single_arguments(tmp_path):
    weird = tmp_path / "my model; rm -rf ~.onnx"
    argv = qnn.converter_command(weird, Path("l.txt"), Path("o.cpp"), QuantizeParams())
    assert str(weird) in argv  # one argv element, never parsed by a shell


def _write_results(
    root: Path, lines: int, tensors: dict[str, np.ndarray], prefix: str = ""
) -> None:
    for i in range(lines):
        d = root / f"Result_{i}"
        d.mkdir(parents=True)
        for name, arr in tensors.items():
            (d / f"{prefix}{qnn.sanitize(name)}.raw").write_bytes((arr + i).astype("<f4").tobytes())


@pytest.mark.parametrize("prefix", ["", "_"])
def test_read_net_run_outputs(tmp_path, prefix):
    heat = np.arange(2 * 4 * 4, dtype=np.float32).reshape(1, 2, 4, 4)
    _write_results(tmp_path, 2, {"537": heat, "out/box:0": heat[:, :1]}, prefix)
    res = qnn.read_net_run_outputs(tmp_path, 2, {"537": (1, 2, 4, 4), "out/box:0": (1, 1, 4, 4)})
    assert [r.line for r in res] == [0, 1]
    np.testing.assert_array_equal(res[1].tensors["537"], heat + 1)
    assert res[0].files["out/box:0"].name == f"{prefix}out_box_0.raw"


def test_reader_errors_name_the_file(tmp_path):
    _write_results(tmp_path, 1, {"537": np.zeros((1, 1, 2, 2), np.float32)})
    with pytest.raises(DataError, match=r"holds 4 float32 values.*\[1, 1, 4, 4\]"):
        qnn.read_net_run_outputs(tmp_path, 1, {"537": (1, 1, 4, 4)})
    with pytest.raises(DataError, match="no output for tensor 'missing'"):
        qnn.read_net_run_outputs(tmp_path, 1, {"missing": (1,)})


def test_sanitize():
    assert qnn.sanitize("model/layout transform:0") == "model_layout_transform_0"
