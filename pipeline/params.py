"""params.yaml: the one source of configuration, one pydantic model per section.

Every model is ``frozen`` and ``extra="forbid"``, so a typo or a wrong type fails at load time with
the key's path (``quantize.activations.mode``) and what was expected. Pipeline functions take the
section they need, never the whole :class:`Params`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.errors import DataError, ParamsError

SCENE_PATTERN = r"^[a-z][a-z0-9_]*$"
SceneName = Annotated[str, Field(pattern=SCENE_PATTERN, max_length=40)]


def check_scene_name(name: str, where: str) -> None:
    """Raise :class:`pipeline.errors.DataError` naming ``where`` (an
    option such as ``--scene``, or ``scene`` for an argument) when ``name`` is not a scene name."""
    if re.match(SCENE_PATTERN, name) and len(name) <= 40:
        return
    hint = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    fix = f" (for example {hint!r})" if hint and re.match(SCENE_PATTERN, hint) else ""
    raise DataError(
        f"{where} {name!r} is not a scene name: use lower-case letters, digits and '_', "
        f"starting with a letter, at most 40 characters{fix}"
    )


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PathsParams(_Section):
    """Where things live, relative to the project root (the folder holding params.yaml)."""

    datasets: Path = Path("datasets")
    out: Path = Path("out")
    cache: Path = Path(".fieldcal/cache")


class ComputeParams(_Section):
    """Where ingest's and the coverage check's per-image work runs (pipeline/engine.py).

    Not a DVC param of any stage on purpose: the engine never changes a result.
    """

    engine: Literal["local", "dask"] = "local"
    scheduler: str | None = Field(default=None, min_length=1)  # dask: tcp://host:8786
    workers: int = Field(default=0, ge=0, le=256)  # dask local cluster: processes; 0 = cores


class ModelParams(_Section):
    path: Path = Path("models/centerface.onnx")
    # Face decoder for task-level metrics; "none" gives output-level metrics only.
    decoder: Literal["centerface", "none"] = "centerface"


class IngestParams(_Section):
    extensions: tuple[str, ...] = (
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".tif",
        ".tiff",
        ".webp",
        ".gif",
    )
    # Pillow's decompression-bomb limit, set explicitly (Pillow's own default is 89_478_485).
    max_image_pixels: int = Field(default=64_000_000, ge=1)
    # Luminance statistics are computed on a thumbnail of this longest side (cheap and stable).
    stats_size: int = Field(default=256, ge=16, le=4096)
    # Decoding processes; 0: one per core.
    workers: int = Field(default=0, ge=0, le=64)
    # Folders outside datasets/ that symbolic links in it may point to (a mounted share); a
    # link to anywhere else is refused (link_outside_tree). Each must be an existing folder.
    allowed_roots: tuple[Path, ...] = ()

    @field_validator("allowed_roots")
    @classmethod
    def _existing_folders(cls, v: tuple[Path, ...]) -> tuple[Path, ...]:
        for root in v:
            if not root.is_dir():
                raise ValueError(
                    f"{str(root)!r} is not an existing folder; mount it, or remove it from the "
                    "list (paths are relative to the project root)"
                )
        return v

    @field_validator("extensions")
    @classmethod
    def _lowercase_dot(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for ext in v:
            if not ext.startswith(".") or ext != ext.lower():
                raise ValueError(f"extensions must be lower-case and start with '.'; got {ext!r}")
        return v


def _count_or_fraction(q: float) -> float:
    if q >= 1 and q != int(q):
        raise ValueError(
            f"{q} is neither a count (a whole number) nor a fraction in (0, 1); "
            f"write {int(q)} or {int(q) + 1}"
        )
    return q


# a count (a whole number), or a fraction (0 < q < 1) of the eligible images
Quota = Annotated[float, Field(ge=0), AfterValidator(_count_or_fraction)]


class CurateParams(_Section):
    seed: int = 0
    # Per-scene number (or fraction) of images for calibration and for (disjoint) evaluation.
    # A scene absent from a mapping gets `default_*`; 0 leaves it out of that set.
    calibration: dict[SceneName, Quota] = Field(default_factory=dict)
    evaluation: dict[SceneName, Quota] = Field(default_factory=dict)
    default_calibration: Quota = 16
    default_evaluation: Quota = 4
    include: tuple[str, ...] = ()  # globs over paths relative to datasets/; empty: all
    exclude: tuple[str, ...] = ()
    # Images within this many bits of difference hash of a better-ranked one are near
    # duplicates and not picked; 0 turns it off.
    near_duplicate_distance: int = Field(default=4, ge=0, le=32)
    selection: Literal["random", "diversity"] = "random"
    session_cap: int | None = Field(default=None, ge=1)  # calibration images per session

    @field_validator("include", "exclude")
    @classmethod
    def _inside_datasets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for g in v:
            if g.startswith("/") or ".." in g.split("/"):
                raise ValueError(
                    f"pattern {g!r} must stay inside datasets/ (no '/' prefix, no '..')"
                )
        return v


class TensorsParams(_Section):
    """How an image becomes the model's input tensor (the QNN .raw file)."""

    height: int = Field(default=256, ge=1)
    width: int = Field(default=320, ge=1)
    resize: Literal["letterbox", "stretch"] = "letterbox"
    color: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # Layout of the .raw files. Legacy QNN/SNPE converters expect NHWC for 4-D image inputs;
    # qairt-converter keeps the source layout (NCHW for ONNX). Spec §7.2.
    layout: Literal["NHWC", "NCHW"] = "NHWC"
    # How input_list.txt names the .raw files (README "Input lists"): "project", relative to
    # the project root (run QNN tools from there); "list", relative to the list's own folder
    # (the folder is self-contained: `adb push` it, run the tools from inside it); "absolute"
    # (this machine only). "relative" is the former name of "project", still accepted.
    list_paths: Literal["project", "list", "absolute", "relative"] = "project"

    @property
    def list_anchor(self) -> Literal["project", "list", "absolute"]:
        """``list_paths`` with the alias resolved."""
        return "project" if self.list_paths == "relative" else self.list_paths

    @field_validator("std")
    @classmethod
    def _nonzero_std(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s == 0 for s in v):
            raise ValueError(f"std must be non-zero per channel; got {list(v)}")
        return v


QuantMode = Literal["tf", "symmetric", "enhanced", "percentile"]


class ActivationQuant(_Section):
    mode: QuantMode = "tf"
    bitwidth: Literal[8, 16] = 8
    percentile: float = Field(default=99.99, ge=90.0, le=100.0)


class WeightQuant(_Section):
    mode: Literal["tf", "symmetric", "enhanced", "percentile", "adjusted"] = "symmetric"
    bitwidth: Literal[4, 8, 16] = 8
    per_channel: bool = True
    percentile: float = Field(default=99.99, ge=90.0, le=100.0)

    @model_validator(mode="after")
    def _per_channel_is_symmetric(self) -> WeightQuant:
        if self.per_channel and self.mode not in ("symmetric",):
            raise ValueError(
                "per-channel weights are always symmetric in QNN (docs §3.4); "
                f"got weights.mode={self.mode!r} with per_channel=true. "
                "Set mode: symmetric or per_channel: false."
            )
        if self.mode == "adjusted" and self.bitwidth != 8:
            raise ValueError("weights.mode 'adjusted' is 8-bit only (docs §5.3)")
        return self


class QuantizeParams(_Section):
    # "qnn": also run the QNN SDK's qnn-onnx-converter (must be on PATH) with matching flags.
    backend: Literal["embedded", "qnn"] = "embedded"
    activations: ActivationQuant = ActivationQuant()
    weights: WeightQuant = WeightQuant()
    bias_bitwidth: Literal[8, 32] = 32
    # Knobs of docs §1.5, defaults matching libpymo / QNN docs.
    round_mode: Literal["half_away", "half_even"] = "half_away"
    # Minimum range of an encoding: 0.01 (QNN docs, libpymo source), 1e-4 (newer SNPE text) or
    # "eps_scale" (AIMET: the step is at least FLT_EPS; libpymo in aimet-onnx 2.42).
    min_range: Annotated[float, Field(gt=0.0)] | Literal["eps_scale"] = 0.01
    strict_symmetric: bool = False
    unsigned_symmetric: bool = False
    # absmax: scale = max(|min|, |max|) / 127 (docs §3.1); max_of_both: max(max/127, -min/128)
    # (aimet_torch v2, and libpymo as shipped in aimet-onnx 2.42, measured: parity/README.md)
    symmetric_scale_rule: Literal["absmax", "max_of_both"] = "absmax"
    fold_batchnorm: bool = True
    # Calibration images per onnxruntime call; peak memory scales with this, not the dataset.
    batch_size: int = Field(default=1, ge=1, le=64)

    @property
    def min_range_value(self) -> float | None:
        """``min_range`` for the encoding functions: None stands for AIMET's eps-scale rule."""
        return None if self.min_range == "eps_scale" else self.min_range

    def with_activation_mode(self, mode: str) -> QuantizeParams:
        """These params with another activation mode (remedies and stability compare modes)."""
        activations = self.activations.model_copy(update={"mode": mode})
        return self.model_copy(update={"activations": activations})


class Gate(_Section):
    cosine_min: float | None = Field(default=None, ge=-1.0, le=1.0)
    sqnr_min_db: float | None = None
    miss_rate_max: float | None = Field(default=None, ge=0.0, le=1.0)


class EvaluateParams(_Section):
    sqnr_signal: Literal["golden", "inference"] = "golden"
    # Model outputs behind the headline "output" metrics (min over them); empty: all outputs.
    outputs: tuple[str, ...] = ()
    default_gate: Gate = Gate(cosine_min=0.99)
    # Applies to every scene: a scene's own gate may be stricter, never laxer.
    gate_floor: Gate = Gate()
    gates: dict[SceneName, Gate] = Field(default_factory=dict)
    # Fail the stage (exit 1) when a scene is under its gate; off: record the verdict only.
    fail_on_gate: bool = False
    worst_layers: int = Field(default=5, ge=1, le=100)
    # Re-run with weights-only and activations-only quantization to attribute each layer's loss.
    attribution: bool = True
    # Also measure each layer fed float inputs (its own error, docs §8.3).
    layerwise: bool = True
    # Enable-one / disable-one sweep (docs §10.10) for this many worst layers; 0 turns it off.
    sensitivity_layers: int = Field(default=3, ge=0, le=50)
    detection_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    # Where the quantized model is judged: fieldcal's simulation, or also Qualcomm's HTP
    # (onnxruntime-qnn: the emulator on x86_64, the real HTP on a Snapdragon), side by side.
    backend: Literal["embedded", "qnn-htp"] = "embedded"
    # How the embedded simulation requantizes 8-bit Conv/ConvTranspose/Add groups: "htp" (the
    # QNN HTP's fixed-point arithmetic, fitted on Qualcomm's HTP emulator, docs §8.5: within
    # 0.1 dB of it on the demo) or "reference" (exact rounding of the real-valued result,
    # docs §8.1: backend-neutral, 0.6 dB off the HTP on the demo's backlight).
    simulation: Literal["reference", "htp"] = "htp"


class CoverageParams(_Section):
    clip_rate_max: float = Field(default=1e-5, ge=0.0, le=1.0)
    sqnr_drop_db: float = Field(default=3.0, ge=0.0)
    max_images: int = Field(default=32, ge=1)  # per session and scene, first by seeded rank
    report_tensors: int = Field(default=10, ge=1)


class RemediesParams(_Section):
    # 16-bit ladders: try the K activations that lose most on their own at 16 bits.
    mixed16: tuple[Annotated[int, Field(ge=1)], ...] = (4, 16)
    # The search for the fewest 16-bit activations that pass (pipeline/analysis/search.py):
    # evaluations per scene (and for every scene at once), and how many of the worst tensors
    # (own error) are measured alone at 16 bits to rank them.
    # 64: on the demo (74 candidates), 16 measured + bisection + pruning of a ~30-tensor prefix
    search_budget: int = Field(default=64, ge=2)
    search_measured: int = Field(default=16, ge=0)


class StabilityParams(_Section):
    """How many calibration images are enough (pipeline/analysis/stability.py)."""

    sizes: tuple[Annotated[int, Field(ge=1)], ...] = (8, 16, 32, 64, 128, 256, 500, 1000)
    repeats: int = Field(default=3, ge=1, le=20)  # seeded draws per size for the scale curve
    # "enough": from this size on, the 95th-percentile scale change stays under the tolerance
    tolerance: float = Field(default=0.05, gt=0.0)


class ReportParams(_Section):
    title: str = "fieldcal quantization report"


class CompileTarget(_Section):
    """One HTP target: QNN's SoC model number and/or HTP architecture (neither: EP defaults)."""

    soc_model: int | None = Field(default=None, ge=0)
    htp_arch: int | None = Field(default=None, ge=0)


class CompileParams(_Section):
    """QNN context binaries of what ships (out/remedies/qdq/ship.qdq.onnx), one per target."""

    targets: tuple[CompileTarget, ...] = (CompileTarget(soc_model=60),)


class Params(_Section):
    paths: PathsParams = PathsParams()
    compute: ComputeParams = ComputeParams()
    model: ModelParams = ModelParams()
    ingest: IngestParams = IngestParams()
    curate: CurateParams = CurateParams()
    tensors: TensorsParams = TensorsParams()
    quantize: QuantizeParams = QuantizeParams()
    evaluate: EvaluateParams = EvaluateParams()
    coverage: CoverageParams = CoverageParams()
    remedies: RemediesParams = RemediesParams()
    stability: StabilityParams = StabilityParams()
    report: ReportParams = ReportParams()
    compile: CompileParams = CompileParams()


def _format_validation(err: ValidationError, source: Path) -> str:
    lines = [f"{source}: {err.error_count()} invalid setting(s):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown key; check the spelling against README 'Params'")
        else:
            got = e.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  {loc}: {e['msg']}{got_s}")
    return "\n".join(lines)


def parse_params(data: object, source: Path = Path("params.yaml")) -> Params:
    if data is None or data == {}:
        sections = ", ".join(Params.model_fields)
        raise ParamsError(
            f"{source} is empty; fieldcal needs one section per stage ({sections}). "
            "Start from the project's params.yaml (README 'Params')"
        )
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping of sections at top level; got {data!r}")
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ParamsError(_format_validation(err, source)) from None


def load_params(path: Path = Path("params.yaml")) -> Params:
    """Read and validate params.yaml; every failure is a :class:`ParamsError` naming the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path} not found; run from the project root or pass --params") from None
    except IsADirectoryError:
        raise ParamsError(f"{path} is a directory; --params takes a params.yaml file") from None
    except UnicodeDecodeError:
        raise ParamsError(f"{path} is not a text file; --params takes a params.yaml file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {err}") from None
    return parse_params(data, path)
