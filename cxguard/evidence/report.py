"""Governance summary of the ledger: per assertion, what was decided and where it failed.

``governance_report(ledger, tenant)`` gathers counts by outcome, the pass rate (as in
:mod:`~cxguard.evidence.drift`: undetermined never counts as a pass), the failures with their
call ids, and the chain verification status; ``to_dict()`` is JSON-ready and
``to_markdown()`` is for people.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cxguard.evidence.chain import VerifyReport
from cxguard.evidence.drift import DriftFinding
from cxguard.evidence.ledger import EvidenceLedger
from cxguard.model import OUTCOMES


@dataclass(frozen=True)
class AssertionSummary:
    assertion_id: str
    counts: dict[str, int]
    """Verdicts by outcome; every outcome is present (0 when none)."""
    pass_rate: float | None
    """``pass / (pass + fail + undetermined)``; None when nothing applicable was decided."""
    failures: tuple[tuple[str, int], ...]
    """``(call_id, turn_index)`` of failed verdicts, oldest first (capped)."""

    @property
    def undetermined(self) -> int:
        return self.counts["undetermined"]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class GovernanceReport:
    tenant: str | None
    generated_at: float
    since: float | None
    until: float | None
    calls: int
    assertions: tuple[AssertionSummary, ...]
    chain: VerifyReport | None
    drift: tuple[DriftFinding, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "generated_at": self.generated_at,
            "since": self.since,
            "until": self.until,
            "calls": self.calls,
            "assertions": [
                {
                    "assertion_id": a.assertion_id,
                    "counts": dict(a.counts),
                    "total": a.total,
                    "pass_rate": a.pass_rate,
                    "undetermined": a.undetermined,
                    "failures": [{"call_id": c, "turn": t} for c, t in a.failures],
                }
                for a in self.assertions
            ],
            "chain": None if self.chain is None else self.chain.as_dict(),
            "drift": [d.to_dict() for d in self.drift],
        }

    def to_markdown(self) -> str:
        scope = f"tenant `{self.tenant}`" if self.tenant else "all tenants"
        lines = [
            f"# cxguard governance report — {scope}",
            "",
            f"Generated {_iso(self.generated_at)}; verdicts decided "
            f"{_iso(self.since) if self.since else 'from the start'} to "
            f"{_iso(self.until) if self.until else 'now'}; {self.calls} calls.",
            "",
            "| assertion | total | pass | fail | n/a | undetermined | pass rate |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for a in self.assertions:
            rate = "—" if a.pass_rate is None else f"{a.pass_rate:.1%}"
            c = a.counts
            lines.append(
                f"| `{a.assertion_id}` | {a.total} | {c['pass']} | {c['fail']} | "
                f"{c['not_applicable']} | {c['undetermined']} | {rate} |"
            )
        failing = [a for a in self.assertions if a.failures]
        if failing:
            lines += ["", "## Failures", ""]
            for a in failing:
                where = ", ".join(f"`{c}` turn {t}" for c, t in a.failures)
                lines.append(f"- `{a.assertion_id}`: {where}")
        if self.drift:
            lines += ["", "## Drift", ""]
            for d in self.drift:
                lines.append(
                    f"- `{d.assertion_id}` / intent `{d.intent or '(none)'}` ({d.kind}): "
                    f"deviation rate {d.direction} {d.baseline_rate:.1%} → {d.recent_rate:.1%} "
                    f"(n={d.baseline_n}/{d.recent_n}, q={d.q_value:.3g})"
                )
        lines += ["", "## Evidence chain", ""]
        if self.chain is None:
            lines.append("Not verified.")
        else:
            status = "intact" if self.chain.ok else "**BROKEN**"
            lines.append(
                f"Hash chain {status}: {self.chain.calls_checked} chains, "
                f"{self.chain.rows_checked} rows checked."
            )
            lines += [f"- {p}" for p in self.chain.problems]
        return "\n".join(lines) + "\n"


def _iso(epoch: float | None) -> str:
    return (
        "—" if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
    )


def governance_report(
    ledger: EvidenceLedger,
    tenant: str | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
    verify: bool = True,
    drift: Sequence[DriftFinding] = (),
    failures_per_assertion: int = 50,
) -> GovernanceReport:
    counts = ledger.outcome_counts(tenant, since, until)
    fails = ledger.failures(tenant, since, until, failures_per_assertion)
    summaries = []
    for assertion_id in sorted(counts):
        full: dict[str, int] = {o: counts[assertion_id].get(o, 0) for o in OUTCOMES}
        applicable = full["pass"] + full["fail"] + full["undetermined"]
        summaries.append(
            AssertionSummary(
                assertion_id=assertion_id,
                counts=full,
                pass_rate=full["pass"] / applicable if applicable else None,
                failures=tuple(fails.get(assertion_id, ())),
            )
        )
    return GovernanceReport(
        tenant=tenant,
        generated_at=time.time(),
        since=since,
        until=until,
        calls=len(ledger.calls(tenant)),
        assertions=tuple(summaries),
        chain=ledger.verify(tenant=tenant) if verify else None,
        drift=tuple(drift),
    )
