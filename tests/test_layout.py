"""pipeline.layout and dvc.yaml name the same outputs, and every stage reads only what an earlier
stage declares."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.layout import Layout

ROOT = Path(__file__).resolve().parents[1]


def _stages() -> dict[str, dict[str, object]]:
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    stages: dict[str, dict[str, object]] = doc["stages"]
    return stages


def _paths(entries: object) -> set[str]:
    """Paths of a dvc.yaml list whose items are strings or one-key mappings (path: options)."""
    out: set[str] = set()
    for item in entries or []:  # type: ignore[attr-defined]
        out |= {item} if isinstance(item, str) else set(item)
    return out


def test_dvc_yaml_declares_exactly_the_layout_outputs() -> None:
    declared = Layout(Path("out")).declared()
    stages = _stages()
    assert list(stages) == list(declared)
    for name, st in stages.items():
        found = _paths(st.get("outs")) | _paths(st.get("metrics")) | _paths(st.get("plots"))
        assert found == {p.as_posix() for p in declared[name]}, name


def test_stages_depend_only_on_earlier_outputs() -> None:
    declared = Layout(Path("out")).declared()
    earlier: list[str] = []
    for name, st in _stages().items():
        for dep in _paths(st.get("deps")):
            if dep.startswith("out/"):
                assert any(dep == o or dep.startswith(o + "/") for o in earlier), (name, dep)
        earlier += [p.as_posix() for p in declared[name]]


def test_role_names_are_checked() -> None:
    tensors = Layout(Path("out")).tensors
    assert tensors.role("evaluation") == tensors.evaluation
    with pytest.raises(ValueError, match="calibration"):
        tensors.role("validation")
