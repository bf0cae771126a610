"""DVC stage `doctor` (first, runs every time): entries in datasets/ that DVC cannot hash are
moved to datasets/.fieldcal-quarantine/ before DVC hashes the tracked folders; the record goes to
out/doctor/quarantine.json. `fieldcal doctor --restore` moves them back."""

from dataclasses import asdict
from pathlib import Path

from pipeline.atomic import write_json
from pipeline.data import doctor
from pipeline.errors import DataError
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.stage import run


def main(params: Params) -> None:
    datasets = params.paths.datasets
    findings = doctor.scan(datasets, params.ingest.allowed_roots)
    added = doctor.ensure_dvcignore(Path("."))
    moved = doctor.quarantine(datasets, findings)
    for q in moved:
        shown = doctor.Finding(q.path, q.kind).shown
        print(
            f"doctor: {shown}: {q.kind}: moved to {datasets / doctor.QUARANTINE}; "
            "`fieldcal doctor --restore` puts it back"
        )
    if added and moved:  # DVC read .dvcignore before this stage: the next run skips them
        raise DataError(
            f".dvcignore did not exclude {doctor.DVCIGNORE_LINE} (added now); run `dvc repro` again"
        )
    entries = [asdict(e) for e in doctor.read_record(datasets)]
    write_json(Layout.of(params.paths).doctor.quarantine, {"quarantined": entries})


if __name__ == "__main__":
    run(main)
