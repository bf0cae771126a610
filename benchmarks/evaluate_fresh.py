"""Fieldcal's default evaluation, the floor and the peer, each in a fresh process: time, peak
RSS, and the targets of issue 14 item 6. ``benchmarks/evaluate.py`` runs this after its own
rows; run alone, this file is the child that makes one measurement.

* ``floor``: one float plus one simulated-quantized pass over the images (plain sessions, every
  option at its default; both spinning settings, each in its own process, the faster time and
  the smaller RSS kept), as ``benchmarks/evaluate.py`` times it in process;
* ``fieldcal default``: ``run_evaluation`` with the evaluate stage's default configuration
  (attribution and layerwise, no sweep) on the encodings file the parent wrote, which the child
  reads as the evaluate stage reads ``out/quantize/encodings.json``;
* ``peer``: onnxruntime's ``qdq_loss_debug`` (:mod:`benchmarks.ort_debugger`) on the float model
  and the QDQ export of the same encodings.

Each child times everything after its imports (reading the model and the encodings included, as
the peer reads its models inside its own steps), reports its peak RSS
(:func:`benchmarks.calibration.peak_rss_mb`, the whole process's) and writes its per-tensor SQNR
(float vs quantized, every kept tensor) so the parent can check that both sides agree. A child
may use no more address space than the memory available when it starts: a peer that does not
fit fails on an allocation instead of waking the kernel's OOM killer on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.calibration import (  # noqa: E402
    FLOOR_SPINNING,
    floor_session,
    in_child,
    model_path,
    peak_rss_mb,
)
from pipeline.params import EvaluateParams  # noqa: E402

if TYPE_CHECKING:
    from pipeline.graph.view import ModelView
    from pipeline.params import TensorsParams
    from pipeline.quantization.encodings import Encodings

FLOOR, DEFAULT, PEER = "floor", "fieldcal default", "peer: ort qdq_loss_debug"
WHAT = (FLOOR, DEFAULT, PEER)
ENCODINGS, QDQ = "encodings.json", "peer.qdq.onnx"
# issue 14 item 6, at 32 images
TARGET_DEFAULT_X_FLOOR, TARGET_PEER_X_DEFAULT, TARGET_RSS_SHARE = 4.5, 3.0, 0.5
Measured = dict[str, float]
Run = Callable[[Any], object]
# the evaluate stage's default simulation (evaluate.simulation): the floor's quantized pass uses
# it too, so both sides run the same arithmetic
STAGE_REQUANT = EvaluateParams().simulation
# the evaluate stage's default configuration (params.yaml evaluate.*), as EvalOptions takes it
STAGE_DEFAULT = {
    "attribution": True,
    "layerwise": True,
    "sensitivity_layers": 0,
    "requant": STAGE_REQUANT,
}


def floor_pass(raws: Sequence[Path], tp: TensorsParams, float_run: Run, quant_run: Run) -> float:
    """The floor's two passes over every image; returns the seconds the float pass took."""
    from pipeline.data.tensors import read_raw

    in_float = 0.0
    for p in raws:
        x = read_raw(p, tp)
        t0 = time.perf_counter()
        float_run(x)
        in_float += time.perf_counter() - t0
        quant_run(x)
    return in_float


def write_inputs(folder: Path, view: ModelView, enc: Encodings) -> None:
    """The encodings file both children read, and the peer's QDQ model made from it (the
    quantize stage's export of the encodings read back, renamed to onnxruntime's names)."""
    import onnx

    from benchmarks.ort_debugger import ort_named
    from pipeline.quantization import encodings_json, qdq

    path = folder / ENCODINGS
    path.write_text(json.dumps(encodings_json.to_1_0_0(enc, {})), encoding="utf-8")
    back = encodings_json.for_model(encodings_json.read(path), view, path)
    onnx.save(ort_named(qdq.export_qdq(view, back), view.input_name), str(folder / QDQ))


def memory_limit_mb() -> float:
    """The address space a child may use, in MB: the kernel's estimate of the memory available
    for a new process, or the hard limit this process was given where that is lower."""
    with open("/proc/meminfo", encoding="ascii") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    return kib / 1024 if hard == resource.RLIM_INFINITY else min(kib / 1024, hard / 2**20)


def _why(stderr: str, limit_mb: float) -> str:
    """A failed child's reason in one short line."""
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
    if "MemoryError" in last or "Failed to allocate" in last:
        return f"out of memory (it may use the {limit_mb:.0f} MB available)"
    return last[-200:]


def sqnr_file(folder: Path, what: str, n: int) -> Path:
    """Where a child writes its per-tensor SQNR (dB, float vs quantized, by kept tensor)."""
    return folder / f"sqnr.{what.split(':')[0].replace(' ', '_')}.{n}.json"


def _cpu_s() -> float:
    """CPU seconds this process has used, every thread, user and system."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(what: str, folder: Path, n: int, height: int, width: int) -> Measured:
    """Child side: one measurement over the first ``n`` .raw files in ``folder``."""
    from pipeline.graph.load import load_view
    from pipeline.params import TensorsParams
    from pipeline.quantization import encodings_json

    tp = TensorsParams(height=height, width=width, layout="NCHW")
    raws = sorted(folder.glob("*.raw"))[:n]
    got: Measured = {}
    cpu0, t0 = _cpu_s(), time.perf_counter()
    view = load_view(model_path())  # the peer reads its models inside its timing too
    enc = encodings_json.for_model(encodings_json.read(folder / ENCODINGS), view, folder)
    if what.startswith(FLOOR):
        from pipeline.quantization.simulate import SimOptions, build_quantized_model

        spinning = what.removeprefix(FLOOR + ", spinning ")
        float_run = floor_session(view.model, spinning)
        quant = build_quantized_model(view, enc, SimOptions(requant=STAGE_REQUANT))
        quant_run = floor_session(quant, spinning)
        floor_pass(raws, tp, float_run, quant_run)
        sqnr: dict[str, float] = {}  # the floor compares nothing
    elif what == DEFAULT:
        from pipeline.analysis import evaluate, runs

        images = [runs.EvalImage(p, p.name, "bench") for p in raws]
        opts = runs.EvalOptions(decoder="centerface", **STAGE_DEFAULT)  # type: ignore[arg-type]
        results = evaluate.run_evaluation(view, enc, images, tp, opts)
        sqnr = {t: acc.sqnr() for t, acc in results["bench"].layers["full"].items()}
    else:
        from benchmarks.ort_debugger import run_peer

        with tempfile.TemporaryDirectory(prefix="fieldcal-peer-") as work:
            peer = run_peer(model_path(), folder / QDQ, raws, tp, Path(work))
        sqnr = peer.xmodel_sqnr
        got = {f"{step} s": s for step, s in peer.seconds.items()}
    got.update(wall_s=time.perf_counter() - t0, cpu_s=_cpu_s() - cpu0, peak_rss_mb=peak_rss_mb())
    if sqnr:
        sqnr_file(folder, what, n).write_text(json.dumps(sqnr), encoding="utf-8")
    return got


def run_rounds(
    folder: Path, counts: list[int], repeat: int, height: int, width: int
) -> tuple[dict[tuple[str, int], Measured], dict[tuple[str, int], str]]:
    """Parent side: every measurement in its own process, in interleaved rounds. Each keeps
    its fastest round and the largest peak RSS of its rounds; one that fails is not retried."""
    results: dict[tuple[str, int], Measured] = {}
    failed: dict[tuple[str, int], str] = {}
    runs = [f"{FLOOR}, spinning {s}" for s in FLOOR_SPINNING] + [DEFAULT, PEER]
    size = ["--height", str(height), "--width", str(width)]
    for n in counts:
        for _ in range(repeat):
            for what in runs:
                if (what, n) in failed:
                    continue
                limit_mb = memory_limit_mb()  # the child's own limit, read as it starts
                got = in_child(
                    __file__, ["--one", what, "--n", str(n), "--raws", str(folder), *size]
                )
                print(f"  fresh process, {what}, N={n}: {got}", file=sys.stderr)
                if isinstance(got, str):
                    failed[(what, n)] = _why(got, limit_mb)
                    continue
                best = results.get((what, n), got)
                rss = max(best["peak_rss_mb"], got["peak_rss_mb"])
                results[(what, n)] = {
                    **min(best, got, key=lambda r: r["wall_s"]),
                    "peak_rss_mb": rss,
                }
        floors = [results.pop((w, n)) for w in runs[:2] if (w, n) in results]
        if floors:
            fastest = min(floors, key=lambda f: f["wall_s"])
            results[(FLOOR, n)] = {**fastest, "peak_rss_mb": min(f["peak_rss_mb"] for f in floors)}
    return results, failed


def _agreement(folder: Path, n: int) -> str:
    """How far the peer's per-tensor SQNR is from fieldcal's, over the tensors both report."""
    ours = json.loads(sqnr_file(folder, DEFAULT, n).read_text(encoding="utf-8"))
    theirs = json.loads(sqnr_file(folder, PEER, n).read_text(encoding="utf-8"))
    both = sorted(set(ours) & set(theirs))
    diff = {t: abs(ours[t] - theirs[t]) for t in both}
    worst = max(diff, key=diff.__getitem__, default="")
    gaps = list(diff.values()) or [0.0]
    return (
        f"- The same quantity on both sides: per-tensor SQNR, float vs quantized model, pooled "
        f"over the images,\n  for {len(both)} tensors (fieldcal {len(ours)}, peer {len(theirs)}). "
        f"|fieldcal - peer|: median {statistics.median(gaps):.3f} dB,\n  largest {max(gaps):.3f} "
        f"dB (tensor {worst!r}, where fieldcal has {ours.get(worst, 0.0):.2f} dB)."
    )


def _verdict(what: str, value: float, limit: float, at_least: bool = False) -> str:
    ok = value >= limit if at_least else value <= limit
    return f"- {what}: {value:.2f} (target {'>=' if at_least else '<='} {limit}): " + (
        "PASS" if ok else "FAIL"
    )


def _peer_estimate(results: dict[tuple[str, int], Measured], n: int) -> tuple[Measured, str]:
    """The peer's time and peak RSS at ``n`` images, extrapolated linearly from the two largest
    smaller counts it was measured at (it keeps every tensor of every image, so both grow in
    proportion to the images), and how; empty when fewer than two were measured."""
    below = sorted(m for (w, m) in results if w == PEER and m < n)[-2:]
    if len(below) < 2:
        return {}, ""
    a, b = (results[(PEER, m)] for m in below)
    est = {
        k: b[k] + (b[k] - a[k]) / (below[1] - below[0]) * (n - below[1])
        for k in ("wall_s", "peak_rss_mb")
    }
    how = f"linear in N through its N = {below[0]} and N = {below[1]} runs"
    return est, how


def _targets(floor: Measured, ours: Measured, peer: Measured | None, why: str) -> list[str]:
    """One line per ratio: its value, and PASS/FAIL where issue 14 item 6 sets a target."""
    rss = ours["peak_rss_mb"] / floor["peak_rss_mb"]
    lines = [
        _verdict("default / floor, time", ours["wall_s"] / floor["wall_s"], TARGET_DEFAULT_X_FLOOR),
        f"- default / floor, peak RSS: {rss:.2f} (no target)",
    ]
    if peer is None:
        return [*lines, f"- peer: {why}; no ratio against it"]
    speed, share = peer["wall_s"] / ours["wall_s"], ours["peak_rss_mb"] / peer["peak_rss_mb"]
    steps = ", ".join(f"{k[:-2]} {v:.2f}" for k, v in peer.items() if k.endswith(" s"))
    return [
        *lines,
        _verdict("peer / default, time", speed, TARGET_PEER_X_DEFAULT, at_least=True),
        _verdict("default / peer, peak RSS", share, TARGET_RSS_SHARE),
        f"- the peer's steps in its fastest round, s: {steps}",
    ]


def report(
    results: dict[tuple[str, int], Measured],
    failed: dict[tuple[str, int], str],
    counts: list[int],
    folder: Path,
    repeat: int,
) -> None:
    """The table and the targets of issue 14 item 6 for each image count."""
    for n in counts:
        print(
            f"\nEach in a fresh process, N = {n} images, fastest of {repeat} rounds; peak RSS: the"
        )
        print("largest of the rounds. Issue 14 states the targets at N = 32.\n")
        print("| measurement | wall s | s per image | CPU s | peak RSS MB |")
        print("|---|---:|---:|---:|---:|")
        for what in WHAT:
            r = results.get((what, n))
            if r is None:
                print(f"| {what} | {failed.get((what, n), 'not run')} | | | |")
            else:
                wall, cpu, rss = r["wall_s"], r["cpu_s"], r["peak_rss_mb"]
                print(f"| {what} | {wall:.2f} | {wall / n:.3f} | {cpu:.1f} | {rss:.0f} |")
        floor, ours, peer = (results.get((w, n)) for w in WHAT)
        if floor is None or ours is None:
            continue
        print("\n" + "\n".join(_targets(floor, ours, peer, failed.get((PEER, n), "not run"))))
        if peer is not None:
            print(_agreement(folder, n))
            continue
        est, how = _peer_estimate(results, n)
        if est:
            print(
                f"- Estimated peer at N = {n} ({how}): {est['wall_s']:.1f} s, "
                f"{est['peak_rss_mb']:.0f} MB. Against it:"
            )
            print("\n".join(f"  {line}" for line in _targets(floor, ours, est, "")[2:4]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--one", required=True, help="the measurement")
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--raws", type=Path, required=True)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    args = ap.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (int(memory_limit_mb() * 2**20), hard))
    print(json.dumps(measure(args.one, args.raws, args.n, args.height, args.width)))


if __name__ == "__main__":
    main()
