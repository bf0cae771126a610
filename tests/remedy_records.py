"""The remedies stage's 16-bit search records as the stage writes them (``search`` and
``search_all_scenes`` of ``out/remedies/remedies.json``), for the report tests."""

from __future__ import annotations

from typing import Any

BIG = [str(t) for t in range(400, 437)]  # 37 tensors: shown by count, not by name


def removal(
    tensor: str, gain: float | None, outcome: str, without: float | None, why: str
) -> dict[str, Any]:
    tried = outcome != "not tried"
    return {
        "tensor": tensor,
        "gain_db": gain,
        "tried": tried,
        "set_size": 4 if tried else None,
        "output_sqnr_db_without": without,
        "passes_without": (outcome == "removed") if tried else None,
        "outcome": outcome,
        "why": why,
    }


def point(tensors: list[str], extra: int, sqnr: float, passes: bool) -> dict[str, Any]:
    return {
        "tensors": tensors,
        "extra_bytes": extra,
        "output_sqnr_db": sqnr,
        "output_cosine": 0.98 + sqnr / 1000,
        "face_miss_rate": 0.0 if passes else 1.0,
        "passes_gate": passes,
    }


def record(
    chosen: list[str] | None,
    removals: list[dict[str, Any]],
    pareto: list[dict[str, Any]],
    evaluations: int,
    why: str,
) -> dict[str, Any]:
    return {
        "budget": 64,
        "evaluations": evaluations,
        "candidates": 40,
        "not_upstream": [],
        "seed_ranking": [],
        "measured_gain_db": {},
        "chosen": chosen,
        "why": why,
        "removals": removals,
        "anchors": [],
        "pareto": pareto,
    }


def day_search() -> dict[str, Any]:
    """Bisection found 4; pruning kept 537 and 373, removed 462; 999's turn never came."""
    removals = [
        removal("462", 0.24, "removed", 17.07, "the other 3 pass without it"),
        removal("373", 0.48, "stays", 16.28, "without it the set scores 16.28 dB and fails"),
        removal("537", 1.57, "stays", 15.89, "without it the set scores 15.89 dB and fails"),
        removal(
            "999", None, "not tried", None, "the evaluation budget was spent before its removal"
        ),
    ]
    pareto = [
        point([], 0, 14.74, False),
        point(["537"], 5_120, 16.31, False),
        point(["537", "373", "999"], 2_216_960, 17.92, True),
        point(BIG, 9_269_760, 22.45, True),
    ]
    return record(["537", "373", "999"], removals, pareto, 31, "3 activations at 16 bits pass")


def night_search() -> dict[str, Any]:
    return record([], [], [point([], 0, 18.19, True)], 2, "the 8-bit model already passes")


def joint_search() -> dict[str, Any]:
    """Every scene at once: 410 stays, 387 removed."""
    removals = [
        removal("387", 0.23, "removed", 16.98, "the other 1 pass without it"),
        removal("410", 0.20, "stays", 15.48, "without it the set scores 15.48 dB and fails"),
    ]
    pareto = [point([], 0, 14.0, False), point(["410"], 7_680, 16.7, True)]
    return record(["410"], removals, pareto, 30, "1 activations at 16 bits pass")


def with_searches(doc: dict[str, Any]) -> dict[str, Any]:
    """A remedies.json document (scenes day and night) with the search records added."""
    own = {"day": day_search(), "night": night_search()}
    return {s: v | {"search": own[s], "search_all_scenes": joint_search()} for s, v in doc.items()}
