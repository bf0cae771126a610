"""DVC stage `compile`: out/quantize/model.qdq.onnx -> a QNN context binary per HTP target."""

from pathlib import Path

from pipeline.backends import qnn_compile
from pipeline.params import Params
from pipeline.stage import run


def main(params: Params) -> None:
    targets = [qnn_compile.Target(t.soc_model, t.htp_arch) for t in params.compile.targets]
    for done in qnn_compile.compile_project(Path("."), params, targets):
        size = sum(b.stat().st_size for b in done.binaries) / 1e6
        print(f"compile: {done.target.name}: {done.model} + binaries of {size:.1f} MB")


if __name__ == "__main__":
    run(main)
