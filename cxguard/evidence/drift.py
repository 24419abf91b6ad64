"""Pass-rate drift per (tenant, assertion): a recent window against a baseline window.

The pass rate is ``pass / (pass + fail + undetermined)``: ``not_applicable`` verdicts say
nothing about the agent, while an ``undetermined`` one is never counted as a pass (a rise in
ASR failures shows as a drop). Windows are wall-clock, on ``decided_at``:
``[now - recent_s, now)`` against the ``baseline_s`` before it. A finding needs enough
verdicts on both sides, a two-proportion z statistic of at least ``z_threshold`` and a change
of at least ``min_delta``; with ``record=True`` findings are stored as ``drift_detected``
findings on the tenant's own chain (never under a call id: no call id is reserved).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

from cxguard.evidence.ledger import EvidenceLedger


@dataclass(frozen=True)
class DriftOptions:
    recent_s: float = 24 * 3600.0
    baseline_s: float = 7 * 24 * 3600.0
    min_samples: int = 30
    """Applicable verdicts needed in *each* window."""
    z_threshold: float = 3.0
    min_delta: float = 0.05


@dataclass(frozen=True)
class DriftFinding:
    tenant: str
    assertion_id: str
    direction: Literal["drop", "rise"]
    baseline_rate: float
    recent_rate: float
    baseline_n: int
    recent_n: int
    z: float
    window_start: float
    """Epoch seconds; the baseline is ``[window_start, window_split)``, the recent window
    ``[window_split, window_end)``."""
    window_split: float
    window_end: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _applicable(counts: dict[str, int]) -> tuple[int, int]:
    passed = counts.get("pass", 0)
    return passed, passed + counts.get("fail", 0) + counts.get("undetermined", 0)


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> float:
    """z of ``x2/n2 - x1/n1`` under the pooled null hypothesis (0 when undefined)."""
    if n1 == 0 or n2 == 0:
        return 0.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return 0.0 if se == 0 else (x2 / n2 - x1 / n1) / se


def detect_drift(
    ledger: EvidenceLedger,
    tenant: str,
    *,
    options: DriftOptions | None = None,
    now: float | None = None,
    record: bool = False,
) -> list[DriftFinding]:
    """Assertions of ``tenant`` whose recent pass rate moved away from the baseline."""
    opts = options or DriftOptions()
    end = time.time() if now is None else now
    split = end - opts.recent_s
    start = split - opts.baseline_s
    baseline = ledger.outcome_counts(tenant, since=start, until=split)
    recent = ledger.outcome_counts(tenant, since=split, until=end)
    findings: list[DriftFinding] = []
    for assertion_id in sorted(set(baseline) & set(recent)):
        x1, n1 = _applicable(baseline[assertion_id])
        x2, n2 = _applicable(recent[assertion_id])
        if min(n1, n2) < opts.min_samples:
            continue
        z = two_proportion_z(x1, n1, x2, n2)
        delta = x2 / n2 - x1 / n1
        if abs(z) < opts.z_threshold or abs(delta) < opts.min_delta:
            continue
        findings.append(
            DriftFinding(
                tenant=tenant,
                assertion_id=assertion_id,
                direction="drop" if delta < 0 else "rise",
                baseline_rate=x1 / n1,
                recent_rate=x2 / n2,
                baseline_n=n1,
                recent_n=n2,
                z=z,
                window_start=start,
                window_split=split,
                window_end=end,
            )
        )
    if record:
        for finding in findings:
            ledger.record_finding(tenant, "drift_detected", finding.to_dict())
    return findings
