"""The report's backend section: embedded and HTP columns side by side, per layer, remedies
re-checked, and DVC metrics for both backends."""

from __future__ import annotations

from pipeline.analysis.artifacts import (
    BackendAgreement,
    BackendComparison,
    BackendOutput,
    BackendScene,
    BackendVerdict,
    LayerAgreement,
    OutputMetric,
    RemedyOnBackend,
    RemedyRecheck,
)
from pipeline.report import backends


def _verdict(sqnr: float, passed: bool) -> BackendVerdict:
    return BackendVerdict(output_cosine=0.98, output_sqnr_db=sqnr, miss_rate=0.25, passed=passed)


def _comparison() -> BackendComparison:
    out = BackendOutput(
        float_vs_embedded=OutputMetric(sqnr_db=7.72, cosine=0.93),
        float_vs_backend=OutputMetric(sqnr_db=5.55, cosine=0.88),
        backend_vs_embedded=BackendAgreement(
            sqnr_db=10.7, steps_0=0.726, steps_1=0.252, steps_more=0.022
        ),
    )
    scenes = {
        "backlight": BackendScene(
            images=4, embedded=_verdict(7.72, False), backend=_verdict(5.55, False),
            verdicts_agree=True, outputs={"537": out},
        ),
        "night": BackendScene(
            images=4, embedded=_verdict(18.19, True), backend=_verdict(17.81, False),
            verdicts_agree=False, outputs={"537": out},
        ),
    }  # fmt: skip
    return BackendComparison(
        backend="qnn-htp",
        versions={"qairt": "2.51.0", "onnxruntime_qnn": "2.7.0"},
        qdq_model_sha256="cd" * 32,
        simulation="reference",
        verdicts_agree=False,
        scenes=scenes,
        layers=[LayerAgreement(layer="conv1", op_type="Relu", equal=0.9764, sqnr_db=31.5)],
    )


def _metrics() -> dict[str, BackendComparison]:
    """metrics.json's ``backends`` block."""
    return {"qnn-htp": _comparison()}


def _recheck() -> RemedyRecheck:
    r = RemedyOnBackend(
        remedy="mixed16_4",
        qdq_model="out/remedies/qdq/night.qdq.onnx",
        qdq_model_sha256="ef" * 32,
        embedded=_verdict(25.0, True),
        backend=_verdict(24.1, True),
        verdicts_agree=True,
        backend_vs_embedded_sqnr_db=30.2,
    )
    return RemedyRecheck(backend="qnn-htp", versions={}, scenes={"night": r})


def test_section_puts_embedded_and_htp_columns_side_by_side() -> None:
    html = backends.section(_metrics(), _recheck())
    assert "qairt 2.51.0" in html and "onnxruntime_qnn 2.7.0" in html and "cd" * 32 in html
    assert "<th>SQNR dB embedded</th><th>SQNR dB qnn-htp</th>" in html
    assert "<th>gate embedded</th><th>gate qnn-htp</th><th>verdicts agree</th>" in html
    assert '<td>night</td><td class="n">4</td><td class="n">18.1900</td>' in html
    assert "verdicts differ" in html and ">NO<" in html
    assert "72.6 %" in html and "25.2 %" in html and "2.2 %" in html  # 0 / 1 / >1 steps
    assert '<td>conv1</td><td>Relu</td><td class="n">97.6 %</td>' in html  # per layer
    assert "mixed16_4" in html and "night.qdq.onnx" in html  # the remedy re-checked
    assert "Coverage verdicts stay on the embedded simulation" in html


def test_section_without_a_backend_says_embedded_only() -> None:
    assert "Embedded simulation only" in backends.section({}, None)


def test_dvc_metrics_name_the_backend_in_the_one_shape() -> None:
    files = backends.metrics_files(_metrics())
    assert set(files) == {"backlight.qnn-htp.json", "night.qnn-htp.json"}
    assert files["night.qnn-htp.json"] == {"cosine": 0.98, "passes_gate": False, "sqnr_db": 17.81}
    assert set(backends.remedy_files(_recheck())) == {"night.mixed16_4.qnn-htp.json"}
    assert backends.metrics_files({}) == {} and backends.remedy_files(None) == {}


def test_summary_has_both_gates() -> None:
    md = "\n".join(backends.markdown(_metrics()))
    assert "| night | 18.19 | 17.81 | pass | FAIL | NO |" in md
