"""Release-aware drift of the deviation rate per (tenant, assertion, intent).

The **deviation rate** of an assertion is ``(fail + undetermined) / (pass + fail +
undetermined)``: ``not_applicable`` says nothing about the agent, and a turn that could not be
judged is never counted as fine (a rise in ASR failures shows). Verdicts are grouped by
(release, assertion, caller intent when decided, mode) — the release being the pack hash,
model ids and agent version (:class:`~cxguard.model.Release`) — and compared like with like:

* **drift** (within one release): the recent window ``[end - recent_s, end)`` against the same
  release's verdicts before it (back to ``since``, default ``baseline_s`` before the window).
  Nothing about the release changed, so a difference is the behaviour of the agent, the
  callers or the speech moving.
* **release_change** (across a release change): a release first seen at ``t`` against the
  release before it, over its last ``baseline_s`` before ``t``. A pack change (hash h1 → h2)
  shows here, never as drift.

**Test.** Each comparison with at least ``min_samples`` applicable verdicts on both sides gets
Fisher's exact two-sided p-value; the p-values of one run are corrected together with
Benjamini–Hochberg (false discovery rate ``alpha``), and a comparison is a finding when its
q-value is at most ``alpha`` **and** the rate moved by at least the assertion's
``drift_threshold`` (its pack's, recorded with the release; default 0.05). Each finding gives
the effect (the difference of rates) with Newcombe's 95 % interval (:mod:`.stats`).

**Recording** is idempotent per finding: its id is derived from (kind, tenant, assertion,
intent, mode, releases, direction), so a sustained drift is one finding however often
``cxguard drift --record`` runs, and remediation notes attach to it.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.evidence.rates import Count, ReleaseSpan
from cxguard.evidence.stats import benjamini_hochberg, fisher_exact, newcombe_interval

DAY = 86_400.0
DEFAULT_THRESHOLD = 0.05
TEST = "Fisher exact (two-sided), Benjamini-Hochberg q-values, Newcombe 95% CI"
FINDING_KINDS = {"drift": "drift_detected", "release_change": "release_change"}
"""Finding kind → the ledger finding kind it is recorded as."""

Kind = Literal["drift", "release_change"]
_Group = tuple[str, str, str]  # assertion, intent, mode


@dataclass(frozen=True)
class DriftOptions:
    recent_s: float = DAY
    baseline_s: float = 7 * DAY
    min_samples: int = 30
    """Applicable verdicts needed on *each* side of a comparison."""
    alpha: float = 0.05
    """False discovery rate over all comparisons of one run."""
    default_threshold: float = DEFAULT_THRESHOLD


@dataclass(frozen=True)
class DriftFinding:
    finding_id: str
    tenant: str
    kind: Kind
    assertion_id: str
    intent: str
    """The caller intent ("" = none known)."""
    mode: str
    release_id: str
    """The release of the recent (drift) or new (release_change) sample."""
    baseline_release_id: str
    direction: Literal["worse", "better"]
    baseline_n: int
    baseline_deviations: int
    recent_n: int
    recent_deviations: int
    delta: float
    """Recent minus baseline deviation rate."""
    ci_low: float
    ci_high: float
    p_value: float
    q_value: float
    threshold: float
    baseline_start: float
    baseline_end: float
    recent_start: float
    recent_end: float
    test: str = TEST

    @property
    def baseline_rate(self) -> float:
        return self.baseline_deviations / self.baseline_n

    @property
    def recent_rate(self) -> float:
        return self.recent_deviations / self.recent_n

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "baseline_rate": self.baseline_rate,
            "recent_rate": self.recent_rate,
        }


@dataclass(frozen=True)
class _Comparison:
    kind: Kind
    group: _Group
    release: str
    baseline_release: str
    base: tuple[int, int]
    recent: tuple[int, int]
    windows: tuple[float, float, float, float]


def _tally(counts: Iterable[Count], release: str) -> dict[_Group, tuple[int, int]]:
    """(deviations, applicable) per group of one release."""
    acc: dict[_Group, list[int]] = defaultdict(lambda: [0, 0])
    for c in counts:
        if c.release != release or c.outcome == "not_applicable":
            continue
        slot = acc[(c.assertion_id, c.intent, c.mode)]
        slot[0] += c.n if c.outcome in ("fail", "undetermined") else 0
        slot[1] += c.n
    return {k: (v[0], v[1]) for k, v in acc.items()}


def _thresholds(ledger: EvidenceLedger, tenant: str) -> dict[str, dict[str, float]]:
    """Per release: each assertion's drift threshold, from the release's recorded framework."""
    out: dict[str, dict[str, float]] = {}
    for finding in ledger.findings(tenant, "release"):
        data = finding["data"]
        assertions = (data.get("policy") or {}).get("assertions") or []
        out[str(data.get("release_id"))] = {
            str(a["id"]): float(a["drift_threshold"])
            for a in assertions
            if isinstance(a, Mapping) and a.get("drift_threshold") is not None
        }
    return out


def finding_id(kind: str, tenant: str, *parts: str) -> str:
    digest = hashlib.sha256("\x1f".join((kind, tenant, *parts)).encode("utf-8")).hexdigest()
    return f"drift-{digest[:16]}"


def _comparisons(
    ledger: EvidenceLedger, tenant: str, opts: DriftOptions, start: float, split: float, end: float
) -> list[_Comparison]:
    out: list[_Comparison] = []
    spans = ledger.release_spans(tenant)
    recent = ledger.rate_counts(tenant, split, end)
    base = ledger.rate_counts(tenant, start, split)
    for release in sorted({c.release for c in recent}):
        before = _tally(base, release)
        for group, now_tally in sorted(_tally(recent, release).items()):
            if group in before:
                windows = (start, split, split, end)
                out.append(
                    _Comparison("drift", group, release, release, before[group], now_tally, windows)
                )
    by_first: list[ReleaseSpan] = sorted(spans, key=lambda s: s.first)
    for i, new in enumerate(by_first):
        if i == 0 or not start <= new.first < end:
            continue
        old = by_first[i - 1]
        old_from = max(start, new.first - opts.baseline_s)
        old_tally = _tally(ledger.rate_counts(tenant, old_from, new.first), old.release)
        new_tally = _tally(ledger.rate_counts(tenant, new.first, end), new.release)
        for group in sorted(set(old_tally) & set(new_tally)):
            windows = (old_from, new.first, new.first, end)
            out.append(
                _Comparison(
                    "release_change",
                    group,
                    new.release,
                    old.release,
                    old_tally[group],
                    new_tally[group],
                    windows,
                )
            )
    return out


def detect_drift(
    ledger: EvidenceLedger,
    tenant: str,
    *,
    options: DriftOptions | None = None,
    now: float | None = None,
    since: float | None = None,
) -> list[DriftFinding]:
    """Drift and release-change findings of ``tenant`` (reads only; see the module doc)."""
    opts = options or DriftOptions()
    end = time.time() if now is None else now
    split = end - opts.recent_s
    start = split - opts.baseline_s if since is None else min(since, split)
    tested = [
        c
        for c in _comparisons(ledger, tenant, opts, start, split, end)
        if min(c.base[1], c.recent[1]) >= opts.min_samples
    ]
    p_values = [
        fisher_exact(c.base[0], c.base[1] - c.base[0], c.recent[0], c.recent[1] - c.recent[0])
        for c in tested
    ]
    q_values = benjamini_hochberg(p_values)
    thresholds = _thresholds(ledger, tenant)
    findings = []
    for c, p, q in zip(tested, p_values, q_values, strict=True):
        (x1, n1), (x2, n2) = c.base, c.recent
        delta = x2 / n2 - x1 / n1
        assertion, intent, mode = c.group
        threshold = thresholds.get(c.release, {}).get(assertion, opts.default_threshold)
        if q > opts.alpha or abs(delta) < threshold:
            continue
        low, high = newcombe_interval(x1, n1, x2, n2)
        direction: Literal["worse", "better"] = "worse" if delta > 0 else "better"
        fid = finding_id(
            c.kind, tenant, assertion, intent, mode, c.release, c.baseline_release, direction
        )
        findings.append(
            DriftFinding(
                fid,
                tenant,
                c.kind,
                assertion,
                intent,
                mode,
                c.release,
                c.baseline_release,
                direction,
                n1,
                x1,
                n2,
                x2,
                delta,
                low,
                high,
                p,
                q,
                threshold,
                *c.windows,
            )
        )
    return findings


def record_findings(ledger: EvidenceLedger, findings: Iterable[DriftFinding]) -> list[bool]:
    """Append each finding to its tenant's chain once; True for those that were new."""
    return [
        ledger.record_once(f.tenant, FINDING_KINDS[f.kind], f.finding_id, f.to_dict())
        for f in findings
    ]


def recorded_findings(ledger: EvidenceLedger, tenant: str | None = None) -> list[dict[str, Any]]:
    """Findings recorded by :func:`record_findings` (both kinds), oldest first."""
    rows = [r for kind in FINDING_KINDS.values() for r in ledger.findings(tenant, kind)]
    return sorted(rows, key=lambda r: (r["tenant"], r["seq"]))
