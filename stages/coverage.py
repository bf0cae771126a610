"""DVC stage `coverage`: each field session against the current encodings -> requantize yes/no."""

from pathlib import Path

from pipeline.analysis import coverage
from pipeline.atomic import write_json
from pipeline.params import Params
from pipeline.stage import run


def main(params: Params) -> None:
    report = coverage.session_report(
        Path("."),
        params.paths,
        params.model.path,
        params.quantize.fold_batchnorm,
        params.tensors,
        params.coverage,
        params.curate.seed,
        compute=params.compute,
    )
    write_json(params.paths.out / "coverage" / "coverage.json", report.verdicts)
    print(f"coverage: {report.measured} images measured, {report.cached} from the cache")
    for sess, scenes in report.verdicts.items():
        for scene, v in scenes.items():
            print(f"coverage: {sess} {scene}: requantize {v['requantize']} ({v['reason']})")


if __name__ == "__main__":
    run(main)
