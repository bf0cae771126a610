"""DVC stage `compile`: out/remedies/qdq/ship.qdq.onnx (what ships: the one configuration for
every scene) -> a QNN context binary per HTP target (or out/compile/manifest.json saying why it
skipped: onnxruntime-qnn has no wheel here, or nothing ships)."""

from pathlib import Path

from pipeline.backends import qnn_compile
from pipeline.params import Params
from pipeline.stage import run


def main(params: Params) -> None:
    done = qnn_compile.compile_stage(Path("."), params)
    if isinstance(done, str):
        print(f"compile: {done}")
        return
    for c in done:
        size = sum(b.stat().st_size for b in c.binaries) / 1e6
        print(f"compile: {c.target.name}: {c.model} + binaries of {size:.1f} MB")


if __name__ == "__main__":
    run(main)
