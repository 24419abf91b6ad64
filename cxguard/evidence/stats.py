"""The statistics of drift: Fisher's exact test, Benjamini–Hochberg, Newcombe's interval.

Pure functions on counts (no numpy, no scipy): a drift finding must be reproducible by
anyone holding the ledger and this file.

* :func:`fisher_exact` — two-sided p-value of a 2×2 table (sum of the probabilities of every
  table with the same margins that is no more likely than the one observed). Exact at any
  sample size, so small intents are tested correctly rather than by a normal approximation.
* :func:`benjamini_hochberg` — q-values controlling the false discovery rate over every test
  of one run (many assertions × intents × releases are tested at once; without a correction
  one in twenty would "drift" by chance at p < 0.05).
* :func:`newcombe_interval` — 95 % confidence interval of a difference of two proportions
  (Newcombe 1998, method 10: from the two Wilson score intervals), sound near 0 and 1 where
  the Wald interval is not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z_95 = 1.959963984540054


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """Two-sided p-value of ``[[a, b], [c, d]]`` (rows: samples; columns: event, no event)."""
    if min(a, b, c, d) < 0:
        raise ValueError("counts must not be negative")
    row1, col1, n = a + b, a + c, a + b + c + d
    if n == 0 or row1 in (0, n) or col1 in (0, n):
        return 1.0
    lo, hi = max(0, col1 - (n - row1)), min(col1, row1)
    base = _log_choose(n, row1)

    def log_p(x: int) -> float:
        return _log_choose(col1, x) + _log_choose(n - col1, row1 - x) - base

    observed = log_p(a)
    # Tables as likely as the observed one (up to rounding) count as "as extreme".
    cutoff = observed + 1e-7
    total = sum(math.exp(lp) for x in range(lo, hi + 1) if (lp := log_p(x)) <= cutoff)
    return min(1.0, total)


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """q-values (BH step-up adjusted p-values), in the order given."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    q = [1.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * m / rank)
        q[i] = min(1.0, running)
    return q


def wilson_interval(x: int, n: int, z: float = Z_95) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = x / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, z: float = Z_95) -> tuple[float, float]:
    """CI of ``x2/n2 - x1/n1``."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    delta = p2 - p1
    return (
        delta - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2),
        delta + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2),
    )
