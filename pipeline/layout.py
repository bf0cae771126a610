"""Every path fieldcal writes or reads between stages, named once.

``dvc.yaml`` declares the same paths (relative to the project root, under ``paths.out``);
``tests/test_layout.py`` checks that each stage's ``outs``, ``metrics`` and ``plots`` are exactly
the ones named here, and that its ``deps`` include the outputs it reads. Build one with
:meth:`Layout.of` (``paths.out`` from params) and read paths by attribute:
``Layout.of(params.paths).quantize.encodings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.params import PathsParams

ROLES = ("calibration", "evaluation")


@dataclass(frozen=True)
class DoctorOut:
    root: Path

    @property
    def quarantine(self) -> Path:
        """What ``fieldcal doctor`` holds in quarantine (pipeline/data/doctor.py)."""
        return self.root / "quarantine.json"


@dataclass(frozen=True)
class IngestOut:
    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"


@dataclass(frozen=True)
class CurateOut:
    root: Path

    @property
    def curated(self) -> Path:
        return self.root / "curated.parquet"

    @property
    def unused(self) -> Path:
        return self.root / "unused.parquet"

    @property
    def summary(self) -> Path:
        """Per scene and source, what each quota took (DVC metrics: numbers only)."""
        return self.root / "summary.json"


@dataclass(frozen=True)
class RoleTensors:
    """One role's tensors: ``raw/*.raw``, the QNN input list and the index."""

    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def input_list(self) -> Path:
        return self.root / "input_list.txt"

    @property
    def index(self) -> Path:
        return self.root / "index.parquet"


@dataclass(frozen=True)
class TensorsOut:
    root: Path

    @property
    def calibration(self) -> RoleTensors:
        return RoleTensors(self.root / "calibration")

    @property
    def evaluation(self) -> RoleTensors:
        return RoleTensors(self.root / "evaluation")

    def role(self, name: str) -> RoleTensors:
        if name not in ROLES:
            raise ValueError(f"role must be one of {ROLES}; got {name!r}")
        return RoleTensors(self.root / name)


@dataclass(frozen=True)
class QuantizeOut:
    root: Path

    @property
    def encodings(self) -> Path:
        return self.root / "encodings.json"

    @property
    def encodings_legacy(self) -> Path:
        return self.root / "encodings_0.6.1.json"

    @property
    def calibration(self) -> Path:
        return self.root / "calibration.json"

    @property
    def qdq_model(self) -> Path:
        """The user's model with QuantizeLinear/DequantizeLinear carrying ``encodings.json``."""
        return self.root / "model.qdq.onnx"

    @property
    def qnn_model(self) -> Path:
        """Where ``quantize.backend: qnn`` has the QNN SDK's converter write its model."""
        return self.root / "qnn" / "model.cpp"


@dataclass(frozen=True)
class CompileOut:
    """QNN context binaries, one folder per target (``soc60``, ``v73``, ``soc60_v73``)."""

    root: Path

    def target(self, name: str) -> Path:
        return self.root / name

    @property
    def manifest(self) -> Path:
        """What the stage did: the targets compiled, or "skipped: <reason>"."""
        return self.root / "manifest.json"


@dataclass(frozen=True)
class EvaluateOut:
    root: Path

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def layers(self) -> Path:
        return self.root / "layers.json"

    @property
    def advice(self) -> Path:
        return self.root / "advice.json"

    @property
    def layer_csvs(self) -> Path:
        """One CSV per scene (``dvc plots``)."""
        return self.root / "layers"

    @property
    def scenes_csv(self) -> Path:
        return self.root / "scenes.csv"


@dataclass(frozen=True)
class CoverageOut:
    root: Path

    @property
    def coverage(self) -> Path:
        return self.root / "coverage.json"


@dataclass(frozen=True)
class RemediesOut:
    root: Path

    @property
    def remedies(self) -> Path:
        return self.root / "remedies.json"

    @property
    def encodings(self) -> Path:
        """``<scene>.json`` (the scene's chosen remedy), ``chosen.json``, ``ship.json`` (the one
        configuration for every scene, when one passes) and ``all/`` (every remedy tried)."""
        return self.root / "encodings"

    def scene_encodings(self, scene: str) -> Path:
        return self.encodings / f"{scene}.json"

    @property
    def recheck(self) -> Path:
        """The chosen remedies re-evaluated on evaluate.backend (pipeline/analysis/htp_recheck)."""
        return self.root / "recheck.json"

    @property
    def chosen(self) -> Path:
        return self.encodings / "chosen.json"

    @property
    def ship(self) -> Path:
        """The encodings file for the car: the cheapest configuration passing every scene."""
        return self.encodings / "ship.json"

    def remedy_encodings(self, remedy: str, scene: str | None = None) -> Path:
        """Every remedy's encodings: ``all/<remedy>.json`` for one that does not depend on the
        scene, ``all/<scene>.<remedy>.json`` for one that does."""
        return self.encodings / "all" / (f"{scene}.{remedy}.json" if scene else f"{remedy}.json")

    @property
    def qdq(self) -> Path:
        """QDQ models (``ship.qdq.onnx``, ``<scene>.qdq.onnx``) of the encodings above."""
        return self.root / "qdq"

    def qdq_model(self, name: str) -> Path:
        return self.qdq / f"{name}.qdq.onnx"


@dataclass(frozen=True)
class StabilityOut:
    root: Path

    @property
    def stability(self) -> Path:
        return self.root / "stability.json"

    @property
    def curves(self) -> Path:
        return self.root / "curves.csv"


@dataclass(frozen=True)
class ReportOut:
    root: Path

    @property
    def html(self) -> Path:
        return self.root / "report.html"

    @property
    def summary(self) -> Path:
        return self.root / "summary.md"

    @property
    def metrics(self) -> Path:
        """DVC metrics, the headline: per scene, the quantize stage's encodings and the shipped
        configuration (pipeline/report/dvc_views)."""
        return self.root / "metrics"

    @property
    def remedies(self) -> Path:
        """Every remedy's metrics per scene, in the metrics' shape (not declared as metrics)."""
        return self.root / "remedies"

    @property
    def plots(self) -> Path:
        """DVC plot tables (dvc.yaml's top-level ``plots``)."""
        return self.root / "plots"


@dataclass(frozen=True)
class Layout:
    """The output tree under ``paths.out``, one attribute per stage."""

    out: Path

    @classmethod
    def of(cls, paths: PathsParams) -> Layout:
        return cls(paths.out)

    @property
    def doctor(self) -> DoctorOut:
        return DoctorOut(self.out / "doctor")

    @property
    def ingest(self) -> IngestOut:
        return IngestOut(self.out / "ingest")

    @property
    def curate(self) -> CurateOut:
        return CurateOut(self.out / "curate")

    @property
    def tensors(self) -> TensorsOut:
        return TensorsOut(self.out / "tensors")

    @property
    def quantize(self) -> QuantizeOut:
        return QuantizeOut(self.out / "quantize")

    @property
    def compile(self) -> CompileOut:
        return CompileOut(self.out / "compile")

    @property
    def evaluate(self) -> EvaluateOut:
        return EvaluateOut(self.out / "evaluate")

    @property
    def coverage(self) -> CoverageOut:
        return CoverageOut(self.out / "coverage")

    @property
    def remedies(self) -> RemediesOut:
        return RemediesOut(self.out / "remedies")

    @property
    def stability(self) -> StabilityOut:
        return StabilityOut(self.out / "stability")

    @property
    def report(self) -> ReportOut:
        return ReportOut(self.out / "report")

    def declared(self) -> dict[str, tuple[Path, ...]]:
        """Per DVC stage, the outputs ``dvc.yaml`` must declare (``outs``, ``metrics`` and
        ``plots`` together), in pipeline order."""
        t, q, e, r = self.tensors, self.quantize, self.evaluate, self.remedies
        return {
            "doctor": (self.doctor.quarantine,),
            "ingest": (self.ingest.manifest, self.ingest.summary),
            "curate": (self.curate.curated, self.curate.unused, self.curate.summary),
            "tensors": (t.root,),
            "quantize": (q.encodings, q.encodings_legacy, q.calibration, q.qdq_model),
            "compile": (self.compile.root,),
            "evaluate": (e.metrics, e.layers, e.advice, e.layer_csvs, e.scenes_csv),
            "coverage": (self.coverage.coverage,),
            "stability": (self.stability.stability, self.stability.curves),
            "remedies": (r.remedies, r.encodings, r.qdq, r.recheck),
            "report": (
                self.report.html,
                self.report.summary,
                self.report.metrics,
                self.report.plots,
                self.report.remedies,
            ),
        }
