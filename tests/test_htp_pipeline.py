"""The HTP through real `dvc repro` on the reduced demo (128x160): the compile stage's context
binary, then the whole pipeline with `evaluate.backend: qnn-htp` (metrics, report, remedies)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.analysis.artifacts import read_metrics
from pipeline.analysis.htp_recheck import read as read_recheck
from pipeline.backends.qnn_compile import Target, load_compiled
from pipeline.backends.qnn_htp import HtpSession, input_shape
from pipeline.data.tensors import read_raw
from pipeline.graph.load import sha256_file
from pipeline.params import TensorsParams
from tests.projects import BIN, make_project, run
from tests.qnn_models import needs_htp

pytestmark = needs_htp


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(tmp_path_factory.mktemp("htp_project"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["evaluate"]["backend"] = "qnn-htp"
    # what the HTP does not touch, as small as it goes (the suite's own end-to-end covers it)
    params["evaluate"].update(attribution=False, layerwise=False, sensitivity_layers=0)
    params["stability"].update(sizes=[2], repeats=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def test_compile_stage_writes_a_context_binary_that_reproduces_the_qdq_session(project):
    run([str(BIN / "dvc"), "repro", "compile"], project)
    summary = json.loads((project / "out/compile/manifest.json").read_text())
    assert summary["status"] == "compiled" and list(summary["targets"]) == ["soc60"]
    folder = project / "out/compile/soc60"
    manifest = json.loads((folder / "manifest.json").read_text())
    qdq = project / "out/quantize/model.qdq.onnx"
    assert manifest["source"]["sha256"] == sha256_file(qdq)
    assert all(manifest["files"][f] == sha256_file(folder / f) for f in manifest["files"])
    tp = TensorsParams(height=128, width=160, layout="NCHW")
    soc60 = Target(soc_model=60)
    ctx = load_compiled(folder / "model_ctx.onnx", soc60)
    ref = HtpSession(qdq, input_shape(128, 160, "NCHW"), _config(soc60))
    raw = sorted((project / "out/tensors/evaluation").rglob("*.raw"))[0]
    x = read_raw(raw, tp)
    a, b = ref.run(x), ctx.run(x)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def _config(target: Target):
    from pipeline.backends.qnn_htp import SessionConfig

    return SessionConfig(target.provider_options())


@pytest.mark.slow
def test_repro_with_the_htp_backend_puts_both_backends_side_by_side(project):
    run([str(BIN / "dvc"), "repro"], project)
    doc = read_metrics(project / "out/evaluate/metrics.json")
    assert doc.backends is not None and set(doc.backends) == {"qnn-htp"}
    htp = doc.backends["qnn-htp"]
    assert set(htp.scenes) == set(doc.scenes) == {"backlight", "day", "night"}
    assert htp.qdq_model_sha256 == sha256_file(project / "out/quantize/model.qdq.onnx")
    assert htp.versions["qairt"] and htp.versions["onnxruntime_qnn"]
    for scene, s in htp.scenes.items():
        # the embedded column is the evaluate stage's own headline
        assert s.embedded.output_sqnr_db == pytest.approx(
            doc.scenes[scene].output_sqnr_db, abs=1e-3
        )
        assert s.embedded.passed == doc.scenes[scene].gate.passed
        assert s.verdicts_agree == (s.embedded.passed == s.backend.passed)
    assert len(htp.layers) > 50 and all(0 <= r.equal <= 1 for r in htp.layers)
    report = (project / "out/report/report.html").read_text()
    assert "<th>SQNR dB embedded</th><th>SQNR dB qnn-htp</th>" in report
    assert "Per layer: embedded vs qnn-htp" in report and "QNN context binaries" in report
    metrics = project / "out/report/metrics"
    assert {f"{s}.qnn-htp.json" for s in htp.scenes} <= {p.name for p in metrics.iterdir()}
    recheck = read_recheck(project / "out/remedies/recheck.json")
    assert recheck.backend == "qnn-htp"
    assert recheck.scenes  # the reduced demo has chosen remedies
    for r in recheck.scenes.values():
        assert (project / r.qdq_model).is_file()
        # mixed 16-bit remedies put 8- and 16-bit tensors around one Conv, which the HTP rejects
        assert r.error is not None or (r.embedded is not None and r.embedded.passed)
    shown = run([str(BIN / "dvc"), "metrics", "show"], project).stdout
    assert "day.qnn-htp.json" in shown
    assert max(len(line) for line in shown.splitlines()) <= 80  # both backends, one narrow table
