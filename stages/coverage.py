"""DVC stage `coverage`: each field session against the current encodings -> requantize yes/no."""

from pathlib import Path

from pipeline.analysis import artifacts, coverage
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.stage import run


def main(params: Params) -> None:
    inputs = coverage.CoverageInputs(
        Path("."), params.paths, params.model.path, params.quantize.fold_batchnorm, params.tensors
    )
    report = coverage.check_sessions(
        inputs, params.coverage, params.curate.seed, compute=params.compute
    )
    artifacts.write(Layout.of(params.paths).coverage.coverage, report.verdicts)
    print(f"coverage: {report.measured} images measured, {report.cached} from the cache")
    for sess, scenes in report.verdicts.items():
        for scene, v in scenes.items():
            print(f"coverage: {sess} {scene}: requantize {v.requantize} ({v.reason})")


if __name__ == "__main__":
    run(main)
