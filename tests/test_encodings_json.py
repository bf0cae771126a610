from __future__ import annotations

import json

import pytest

from pipeline.atomic import dumps_json
from pipeline.errors import DataError
from pipeline.quantization import encodings_json
from pipeline.quantization.encoding import symmetric_encoding, tf_encoding
from pipeline.quantization.encodings import Encodings


@pytest.fixture
def enc() -> Encodings:
    return Encodings(
        activations={"x": tf_encoding(-1.8, 0.5), "y": tf_encoding(0.0, 6.0)},
        weights={"w": [symmetric_encoding(-0.5, 0.7011175155639648), symmetric_encoding(-1, 1)]},
        biases={"b": [tf_encoding(-0.1, 0.2)]},
    )


def test_1_0_0_golden(enc):
    doc = encodings_json.to_1_0_0(enc, {"activation_bitwidth": 8})
    x = doc["activation_encodings"][0]
    assert x == {
        "name": "x",
        "dtype": "INT",
        "enc_type": "PER_TENSOR",
        "bw": 8,
        "is_sym": False,
        "scale": [0.009019607843137253],
        "offset": [-200],
    }
    w = doc["param_encodings"][0]
    assert (w["enc_type"], w["offset"], w["is_sym"]) == ("PER_CHANNEL", [-128, -128], True)
    assert w["scale"][0] == 0.005520610358771377
    text = dumps_json(doc)
    assert text == dumps_json(json.loads(text))  # canonical: stable under a round trip


@pytest.mark.parametrize("writer", [encodings_json.to_1_0_0, encodings_json.to_0_6_1])
def test_round_trip(enc, writer, tmp_path):
    path = tmp_path / "e.json"
    path.write_text(dumps_json(writer(enc, {})))
    back = encodings_json.read(path)
    assert back.disagreements == []
    for name, e in enc.activations.items():
        got = back.activations[name][0]
        assert got.offset == e.offset
        assert got.scale == pytest.approx(e.scale, rel=1e-12)
        assert got.max == pytest.approx(e.max, rel=1e-9)
    assert [g.offset for g in back.params["w"]] == [-128, -128]


def test_legacy_reader_recomputes_and_reports_disagreement(tmp_path):
    doc = {
        "version": "0.6.1",
        "activation_encodings": {
            "t": [
                {
                    "bitwidth": 8,
                    "dtype": "int",
                    "is_symmetric": "False",
                    "min": -1.8,
                    "max": 0.5,
                    "scale": 0.5,
                    "offset": 200,
                }
            ]
        },
        "param_encodings": {},
    }
    path = tmp_path / "e.json"
    path.write_text(json.dumps(doc))
    back = encodings_json.read(path)
    assert back.activations["t"][0].offset == -200
    assert any("stored offset 200" in d for d in back.disagreements)
    assert any("stored scale 0.5" in d for d in back.disagreements)


def test_not_an_encodings_file(tmp_path):
    (tmp_path / "e.json").write_text("{}")
    with pytest.raises(DataError, match="activation_encodings"):
        encodings_json.read(tmp_path / "e.json")
