from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import ParamsError
from pipeline.params import Params, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_project_params_are_valid():
    p = load_params(ROOT / "params.yaml")
    assert p.quantize.activations.mode == "tf"
    assert p.tensors.height % 32 == 0 and p.tensors.width % 32 == 0


def test_defaults_validate():
    assert Params().quantize.weights.per_channel


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            {"quantize": {"activations": {"mdoe": "tf"}}},
            r"quantize\.activations\.mdoe: unknown key",
        ),
        ({"quantize": {"activations": {"mode": "fancy"}}}, r"quantize\.activations\.mode: .*'tf'"),
        ({"tensors": {"height": "tall"}}, r"tensors\.height: .*integer"),
        ({"curate": {"calibration": {"Night!": 3}}}, r"curate\.calibration\.Night!"),
        (
            {"quantize": {"weights": {"mode": "tf", "per_channel": True}}},
            r"per-channel .* symmetric",
        ),
        ({"tensors": {"std": [1, 0, 1]}}, r"std must be non-zero"),
        ([1, 2], r"expected a mapping"),
    ],
)
def test_bad_params_name_the_key(data, match):
    with pytest.raises(ParamsError, match=match):
        parse_params(data)


def test_invalid_yaml(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("quantize: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_cli_reports_bad_params_without_traceback(tmp_path):
    (tmp_path / "params.yaml").write_text("quantize:\n  activations:\n    bitwidth: 7\n")
    result = CliRunner().invoke(app, ["params", "check", "--root", str(tmp_path)])
    assert result.exit_code == 1
    assert "quantize.activations.bitwidth" in result.output
    assert "Traceback" not in result.output
