"""How the report and the CLI print numbers: rates with their counts and a Wilson interval,
percentages with enough digits to show why a value fails its limit."""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
TOO_FEW = 10  # under this many trials a rate is shown, but "too few to judge"


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials (Wilson 1927; Agresti and
    Coull 1998, "Approximate is better than exact"), clipped to [0, 1].

    Unlike the normal interval it stays inside [0, 1] and is not empty at k = 0 or k = n:
    1 of 1 gives [0.21, 1.0], 0 of 2 gives [0.0, 0.66]. ``n`` must be positive.
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"wilson requires 0 <= k <= n and n > 0. Got k={k}, n={n}.")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def percent(x: float) -> str:
    """``x`` (a fraction) as a percentage with at least two significant digits:
    0.000013 -> "0.0013 %", 0.4553 -> "45.5 %", 0.0 -> "0 %"."""
    if x == 0:
        return "0 %"
    v = 100 * x
    decimals = max(1, 1 - math.floor(math.log10(abs(v))))
    return f"{v:.{decimals}f} %"


def percent_beside(value: float, limit: float) -> tuple[str, str]:
    """``value`` and ``limit`` as percentages with as many decimals as it takes for unequal
    numbers to print differently: (0.000013, 0.00001) -> ("0.0013 %", "0.0010 %")."""
    decimals = max(1, 1 - math.floor(math.log10(abs(100 * value)))) if value else 1
    while decimals < 12 and value != limit:
        if f"{100 * value:.{decimals}f}" != f"{100 * limit:.{decimals}f}":
            break
        decimals += 1
    return f"{100 * value:.{decimals}f} %", f"{100 * limit:.{decimals}f} %"


def rate(k: int, n: int, noun: str) -> str:
    """ "1 of 1 faces (95 % CI 21-100 %)"; under :data:`TOO_FEW` trials it says so, and with no
    trials at all it says there is nothing to judge."""
    if n == 0:
        return f"no {noun}: nothing to judge"
    lo, hi = wilson(k, n)
    text = f"{k} of {n} {noun} (95 % CI {100 * lo:.0f}-{100 * hi:.0f} %)"
    return text + (": too few to judge" if n < TOO_FEW else "")
