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


def test_dvc_params_list_matches_dvc_yaml():
    """Every key dvc.yaml reads (params lists and ${...}) is in DVC_PARAMS, and no other."""
    import re

    import yaml

    from pipeline.data.checks import DVC_PARAMS

    text = (ROOT / "dvc.yaml").read_text()
    keys = set(re.findall(r"\$\{([a-z_.]+)\}", text))
    for stage in yaml.safe_load(text)["stages"].values():
        keys |= set(stage.get("params", []))
    assert keys == set(DVC_PARAMS)


@pytest.mark.parametrize("text", ["", "# nothing\n", "{}\n"])
def test_empty_params_is_an_error(tmp_path, text):
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=r"is empty; fieldcal needs one section per stage"):
        load_params(tmp_path / "params.yaml")


def test_partial_params_name_what_is_missing(tmp_path):
    import yaml

    full = yaml.safe_load((ROOT / "params.yaml").read_text())
    del full["curate"], full["model"]["path"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(full))
    res = CliRunner().invoke(app, ["params", "check", "--root", str(tmp_path)])
    assert res.exit_code == 1
    assert "params.yaml: model.path: missing; dvc.yaml reads it" in res.output
    assert "params.yaml: curate: missing" in res.output and "curate.seed: missing" in res.output


@pytest.mark.parametrize(
    ("quota", "ok"), [(2, True), (2.0, True), (0.25, True), (0, True), (2.5, False), (1.5, False)]
)
def test_quotas_are_counts_or_fractions_never_floored(quota, ok):
    data = {"curate": {"calibration": {"night": quota}}}
    if ok:
        assert parse_params(data).curate.calibration["night"] == quota
    else:
        with pytest.raises(ParamsError, match=r"curate\.calibration\.night: .*neither a count"):
            parse_params(data)


def test_scene_typos_are_errors_and_known_scenes_without_images_warnings(tmp_path):
    import yaml

    from pipeline.atomic import write_parquet
    from pipeline.data.ingest import MANIFEST_SCHEMA

    full = yaml.safe_load((ROOT / "params.yaml").read_text())
    full["paths"] = {"datasets": "datasets", "out": "out"}
    full["curate"]["calibration"]["nigth"] = 3
    full["curate"]["evaluation"]["tunnel"] = 2  # a sidecar declares it; no images yet
    full["evaluate"]["gates"] = {"nigth": {"cosine_min": 0.999}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(full))
    (tmp_path / "datasets/vehicle/s1").mkdir(parents=True)
    (tmp_path / "datasets/vehicle/s1/sidecar.json").write_text('{"scene": "tunnel"}')
    rows = [
        {
            "path": f"g/{i}.png",
            "source": "g",
            "session": "g",
            "status": "ok",
            "reason": "",
            "scene": s,
        }
        for i, s in enumerate(["day", "night"])
    ]
    write_parquet(
        tmp_path / "out/ingest/manifest.parquet",
        __import__("pyarrow").Table.from_pylist(rows, schema=MANIFEST_SCHEMA),
    )
    res = CliRunner().invoke(app, ["params", "check", "--root", str(tmp_path)])
    assert res.exit_code == 1
    assert (
        "params.yaml: curate.calibration.nigth: unknown scene 'nigth'. Did you mean 'night'? "
        "Known scenes: backlight, day, night, tunnel"
    ) in res.output
    assert "evaluate.gates.nigth: unknown scene 'nigth'" in res.output
    assert "warning: curate.evaluation.tunnel: no images of scene 'tunnel' yet" in res.output
    assert "warning: curate.calibration.backlight: no images of scene 'backlight' yet" in res.output
