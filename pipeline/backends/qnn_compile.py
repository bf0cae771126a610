"""QNN context binaries: a QDQ model compiled for one HTP target, ready for a device.

Creating a QNN EP session with ``ep.context_enable=1`` writes an EPContext ONNX model and the QNN
context binary it references (``*_qnn.bin``; not embedded, ``ep.context_embed_mode=0``). A
device loads them only with a QAIRT runtime at least as new as the one that compiled them
(:attr:`Versions.qairt` in the manifest) and on the SoC they were compiled for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.atomic import write_json
from pipeline.backends.qnn_htp import (
    HtpSession,
    SessionConfig,
    input_shape,
    make_static,
    unsupported_platform,
    versions,
)
from pipeline.errors import DataError, PipelineError
from pipeline.graph.load import load_view, sha256_file
from pipeline.layout import Layout

if TYPE_CHECKING:
    from pipeline.params import Params

CONTEXT_MODEL = "model_ctx.onnx"
MANIFEST = "manifest.json"
LOADS_ON = "a QAIRT runtime at least as new as versions.qairt, on the target SoC"


@dataclass(frozen=True)
class Target:
    """What a context binary is compiled for: a QNN SoC model number and/or an HTP architecture
    (onnxruntime-qnn provider options ``soc_model`` and ``htp_arch``, e.g. 60 / 73); neither:
    the EP's defaults."""

    soc_model: int | None = None
    htp_arch: int | None = None

    @property
    def name(self) -> str:
        parts = [f"soc{self.soc_model}"] if self.soc_model is not None else []
        parts += [f"v{self.htp_arch}"] if self.htp_arch is not None else []
        return "_".join(parts) or "default"

    def provider_options(self) -> dict[str, str]:
        po: dict[str, str] = {}
        if self.soc_model is not None:
            po["soc_model"] = str(self.soc_model)
        if self.htp_arch is not None:
            po["htp_arch"] = str(self.htp_arch)
        return po


@dataclass(frozen=True)
class Compiled:
    """One target's files: the EPContext model, its context binaries and the manifest."""

    target: Target
    model: Path
    binaries: tuple[Path, ...]
    manifest: Path


def compile_target(qdq_model: Path, folder: Path, target: Target, shape: Sequence[int]) -> Compiled:
    """Compile ``qdq_model`` for ``target`` into ``folder``: ``model_ctx.onnx``, its ``*.bin``
    and ``manifest.json`` with the target, the versions and the sha256 of the source and of
    every file written. The QNN EP writes its files itself, so they are written into a hidden
    sibling folder first and the folder is renamed into place whole: a run killed midway
    leaves ``folder`` as it was or absent, never half-written."""
    import os
    import shutil

    import onnx

    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    ctx = partial / CONTEXT_MODEL
    entries = {
        "ep.context_enable": "1",
        "ep.context_embed_mode": "0",
        "ep.context_file_path": str(ctx),
    }
    source = make_static(onnx.load(str(qdq_model)), shape)
    HtpSession(source, config=SessionConfig(target.provider_options(), entries))
    if not ctx.is_file():
        raise PipelineError(f"the QNN EP wrote no EPContext model at {ctx} for {target.name}")
    binaries = sorted(partial.glob("*.bin"))  # named by the EPContext model relative to itself
    write_json(
        partial / MANIFEST,
        {
            "target": {
                "name": target.name,
                "soc_model": target.soc_model,
                "htp_arch": target.htp_arch,
            },
            "source": {"file": qdq_model.name, "sha256": sha256_file(qdq_model)},
            "input_shape": list(shape),
            "versions": versions().as_dict(),
            "files": {f.name: sha256_file(f) for f in (ctx, *binaries)},
            "loads_on": LOADS_ON,
        },
    )
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    moved = tuple(folder / b.name for b in binaries)
    return Compiled(target, folder / CONTEXT_MODEL, moved, folder / MANIFEST)


def load_compiled(compiled_model: Path, target: Target = Target()) -> HtpSession:
    """A session of an EPContext model (its binaries beside it), shapes as compiled."""
    return HtpSession(compiled_model, config=SessionConfig(target.provider_options()))


def compile_by_hand(
    root: Path, params: Params, targets: Sequence[Target], qdq_model: Path, folder: Path
) -> list[Compiled]:
    """``fieldcal compile``: any QDQ model into ``folder/<target>/`` for each target, outside
    DVC's outputs, the input shape from the tensors params. (The compile stage compiles what
    ships into ``out/compile``: :func:`compile_stage`.)"""
    if folder.resolve().is_relative_to((root / params.paths.out).resolve()):
        raise DataError(
            f"{folder} is under {params.paths.out}/, which DVC writes; compile by hand into "
            "another folder (--out), or let the compile stage write out/compile"
        )
    if not qdq_model.is_file():
        raise DataError(
            f"{qdq_model} not found: run `dvc repro` first, or name another QDQ model with "
            "--qdq (out/remedies/qdq/ship.qdq.onnx exists only when one configuration passes "
            "every scene; the report says which scenes fail)"
        )
    return _compile_all(root, params, targets, qdq_model, folder)


def _compile_all(
    root: Path, params: Params, targets: Sequence[Target], qdq_model: Path, folder: Path
) -> list[Compiled]:
    """Compile ``qdq_model`` (its callers have checked that it exists, each with its own
    message) for each target into ``folder/<target>/``."""
    view = load_view(root / params.model.path)
    tp = params.tensors
    shape = input_shape(tp.height, tp.width, view.input_layout)
    return [compile_target(qdq_model, folder / t.name, t, shape) for t in targets]


def compile_stage(root: Path, params: Params) -> list[Compiled] | str:
    """The ``compile`` stage: every ``compile.targets`` entry, and ``out/compile/manifest.json``
    naming them. Where onnxruntime-qnn has no wheel for this machine nothing compiles and the
    manifest says ``skipped: <reason>`` (returned), so ``dvc repro`` goes on; where it has one
    but the ``qnn`` extra is missing, the error names ``pip install 'fieldcal[qnn]'``.

    Everything is written into a hidden sibling of ``out/compile`` that replaces it whole at
    the end: a killed run leaves the previous outputs or none, never a mix."""
    import os
    import shutil

    out = Layout(root / params.paths.out).compile
    staging = out.root.with_name(f".{out.root.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    status, done = _stage_into(root, params, staging)
    shutil.rmtree(out.root, ignore_errors=True)
    os.replace(staging, out.root)
    moved = [
        Compiled(d.target, out.root / d.target.name / d.model.name, tuple(
            out.root / d.target.name / b.name for b in d.binaries
        ), out.root / d.target.name / d.manifest.name)
        for d in done
    ]  # fmt: skip
    return moved if status is None else status


def _stage_into(root: Path, params: Params, staging: Path) -> tuple[str | None, list[Compiled]]:
    """Compile what ships (``out/remedies/qdq/ship.qdq.onnx``, the one configuration for every
    scene) into ``staging`` and write its manifest; (skip reason or None, compiled)."""
    manifest = staging / MANIFEST
    out = Layout(root / params.paths.out)
    qdq_model = out.remedies.qdq_model("ship")
    why = unsupported_platform()
    if why is None and not qdq_model.is_file():
        why = (
            f"nothing ships: no configuration passes every scene ({qdq_model} was not written); "
            "the report's verdict says what would. Compile any QDQ model by hand: "
            "fieldcal compile --qdq PATH --soc N --out DIR"
        )
    if why is not None:
        status = f"skipped: {why}"
        write_json(manifest, {"status": status, "targets": {}})
        return status, []
    targets = [Target(t.soc_model, t.htp_arch) for t in params.compile.targets]
    done = _compile_all(root, params, targets, qdq_model, staging)
    write_json(
        manifest,
        {
            "status": "compiled",
            "source": {
                "file": Layout(Path(params.paths.out)).remedies.qdq_model("ship").as_posix(),
                "sha256": sha256_file(qdq_model),
            },
            "targets": {d.target.name: d.manifest.relative_to(staging).as_posix() for d in done},
            "context_binaries": {
                d.target.name: [b.relative_to(staging).as_posix() for b in d.binaries] for d in done
            },
            "versions": versions().as_dict(),
        },
    )
    return None, done
