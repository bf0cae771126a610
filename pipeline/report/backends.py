"""The report's backend section: the embedded simulation and a real backend (the QNN HTP) side
by side per scene, per output and per layer, and the remedies re-checked on that backend."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from pipeline.analysis.artifacts import BackendComparison, BackendVerdict, RemedyRecheck
from pipeline.layout import Layout
from pipeline.report.numbers import percent
from pipeline.report.tables import table

Comparisons = Mapping[str, BackendComparison]  # metrics.json's ``backends`` (empty: none)


def _gate(v: BackendVerdict) -> str:
    return "pass" if v.passed else "FAIL"


def _miss(v: BackendVerdict) -> str:
    return percent(v.miss_rate) if v.miss_rate is not None else "n/a"


def _provenance(name: str, b: BackendComparison) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in sorted(b.versions.items()))
    return (
        f"<p>Backend <b>{html.escape(name)}</b> ({html.escape(versions)}); QDQ model sha256 "
        f"<code>{b.qdq_model_sha256}</code>; embedded simulation: requantization "
        f"<code>{html.escape(b.simulation)}</code>. The same encodings on both; "
        f"{'every scene gets the same verdict' if b.verdicts_agree else '<b>verdicts differ</b>'}"
        ".</p>"
    )


def _scenes(name: str, b: BackendComparison) -> str:
    rows = []
    for s, sc in sorted(b.scenes.items()):
        e, h = sc.embedded, sc.backend
        rows.append(
            [
                s,
                sc.images,
                e.output_sqnr_db,
                h.output_sqnr_db,
                e.output_cosine,
                h.output_cosine,
                _miss(e),
                _miss(h),
                _gate(e),
                _gate(h),
                "yes" if sc.verdicts_agree else "NO",
            ]
        )
    headers = [
        "scene",
        "images",
        "SQNR dB embedded",
        f"SQNR dB {name}",
        "cosine embedded",
        f"cosine {name}",
        "face miss embedded",
        f"face miss {name}",
        "gate embedded",
        f"gate {name}",
        "verdicts agree",
    ]
    return table(headers, rows)


def _outputs(name: str, b: BackendComparison) -> str:
    rows = [
        [
            s,
            o,
            out.float_vs_embedded.sqnr_db,
            out.float_vs_backend.sqnr_db,
            out.backend_vs_embedded.sqnr_db,
            percent(out.backend_vs_embedded.steps_0),
            percent(out.backend_vs_embedded.steps_1),
            percent(out.backend_vs_embedded.steps_more),
        ]
        for s, sc in sorted(b.scenes.items())
        for o, out in sorted(sc.outputs.items())
    ]
    headers = [
        "scene",
        "output",
        "float vs embedded dB",
        f"float vs {name} dB",
        f"{name} vs embedded dB",
        "same step",
        "1 step apart",
        "> 1 step apart",
    ]
    return table(headers, rows)


def _layers(name: str, b: BackendComparison) -> str:
    if not b.layers:
        return "<p>Per-layer comparison off.</p>"
    rows = [[r.layer, r.op_type, percent(r.equal), r.sqnr_db] for r in b.layers]
    lead = (
        f"<p>Embedded vs {html.escape(name)} per kept tensor (topological order), over every "
        "evaluation image: the share of elements on the same quantization step and the SQNR "
        "between the two (embedded as the signal). Errors accumulate along the graph; a layer "
        "whose share drops below its inputs' is where the two backends' arithmetic differs.</p>"
    )
    return lead + table(["layer", "op", "same step", f"SQNR embedded vs {name} dB"], rows)


def _remedies(rc: RemedyRecheck | None) -> str:
    if rc is None or rc.backend is None:
        return ""
    if not rc.scenes:
        return "<p>No scene has a chosen remedy to re-check.</p>"
    rows = [
        [
            s,
            r.remedy,
            r.embedded.output_sqnr_db,
            r.backend.output_sqnr_db,
            _gate(r.embedded),
            _gate(r.backend),
            "yes" if r.verdicts_agree else "NO",
            r.qdq_model,
        ]
        if r.embedded is not None and r.backend is not None
        else [s, r.remedy, "n/a", "n/a", "n/a", f"does not run: {r.error}", "n/a", r.qdq_model]
        for s, r in sorted(rc.scenes.items())
    ]
    headers = [
        "scene",
        "chosen remedy",
        "SQNR dB embedded",
        f"SQNR dB {rc.backend}",
        "gate embedded",
        f"gate {rc.backend}",
        "verdicts agree",
        "QDQ model",
    ]
    return f"<h3>Chosen remedies on {html.escape(rc.backend)}</h3>" + table(headers, rows)


def section(found: Comparisons, remedies_recheck: RemedyRecheck | None) -> str:
    """The whole section; one paragraph when evaluation ran on the embedded simulation only."""
    if not found:
        return (
            "<p>Embedded simulation only (evaluate.backend: embedded). With "
            "<code>evaluate.backend: qnn-htp</code> every scene is also judged on Qualcomm's "
            "HTP (emulator on x86_64) and shown here beside the simulation.</p>"
        )
    parts = []
    for name, b in sorted(found.items()):
        parts += [
            _provenance(name, b),
            f"<h3>Per scene: embedded and {html.escape(name)} side by side</h3>",
            _scenes(name, b),
            f"<h3>Per output: embedded and {html.escape(name)} against float and each other</h3>",
            _outputs(name, b),
            f"<h3>Per layer: embedded vs {html.escape(name)}</h3>",
            _layers(name, b),
        ]
    parts.append(_remedies(remedies_recheck))
    parts.append(
        "<p>Coverage verdicts stay on the embedded simulation: clip rates compare float "
        "activations with the encodings' ranges and do not depend on the backend; the local "
        "SQNR drop is measured against the scene's own baseline on the same simulation.</p>"
    )
    return "".join(parts)


def markdown(found: Comparisons) -> list[str]:
    """Summary lines: per scene, the headline SQNR and the gate on each backend."""
    lines: list[str] = []
    for name, b in sorted(found.items()):
        lines += [
            "",
            f"On **{name}** (QAIRT {b.versions.get('qairt', '?')}, onnxruntime-qnn "
            f"{b.versions.get('onnxruntime_qnn', '?')}): "
            + ("every verdict agrees." if b.verdicts_agree else "**verdicts differ**."),
            "",
            f"| scene | SQNR dB embedded | SQNR dB {name} | gate embedded | gate {name} | agree |",
            "|---|---:|---:|---|---|---|",
        ]
        for s, sc in sorted(b.scenes.items()):
            e, h = sc.embedded, sc.backend
            lines.append(
                f"| {s} | {e.output_sqnr_db:.2f} | {h.output_sqnr_db:.2f} | {_gate(e)} | "
                f"{_gate(h)} | {'yes' if sc.verdicts_agree else 'NO'} |"
            )
    return lines


def _metric(v: BackendVerdict) -> dict[str, float | bool]:
    return {"cosine": v.output_cosine, "passes_gate": v.passed, "sqnr_db": v.output_sqnr_db}


def metrics_files(found: Comparisons) -> dict[str, dict[str, float | bool]]:
    """Declared DVC metrics of the real backend, in :mod:`pipeline.report.dvc_views`' one
    shape: ``<scene>.<backend>.json``, the quantize stage's encodings run there."""
    return {
        f"{s}.{name}.json": _metric(sc.backend)
        for name, b in found.items()
        for s, sc in b.scenes.items()
    }


def remedy_files(rc: RemedyRecheck | None) -> dict[str, dict[str, float | bool]]:
    """``<scene>.<remedy>.<backend>.json``: a chosen remedy re-checked on the backend, beside
    the embedded rows of every remedy (``out/report/remedies``)."""
    if rc is None or rc.backend is None:
        return {}
    return {
        f"{s}.{r.remedy}.{rc.backend}.json": _metric(r.backend)
        for s, r in rc.scenes.items()
        if r.backend is not None
    }


def compiled(manifest: Mapping[str, Any] | None, layout: Layout) -> str:
    """What the compile stage did (``out/compile/manifest.json``): the context binaries per
    target, or why it skipped."""
    if manifest is None:
        return ""
    status = str(manifest.get("status", "unknown"))
    if status != "compiled":
        return f"<p>QNN context binaries: <b>{html.escape(status)}</b>.</p>"
    root = layout.compile.root
    items = "".join(
        f"<li>{html.escape(t)}: <code>{html.escape((root / m).as_posix())}</code></li>"
        for t, m in sorted(manifest.get("targets", {}).items())
    )
    qairt = html.escape(str(manifest.get("versions", {}).get("qairt", "?")))
    return (
        f"<p>QNN context binaries (a device loads them with a QAIRT runtime at least as new as "
        f"{qairt}, on the SoC compiled for):</p><ul>{items}</ul>"
    )
