"""Deviation-rate drift and the governance report, on SQLite and a throwaway PostgreSQL database."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from cxguard.evidence import (
    DriftOptions,
    EvidenceLedger,
    detect_drift,
    governance_report,
)
from cxguard.evidence.drift import record_findings
from cxguard.evidence.stats import benjamini_hochberg, fisher_exact, newcombe_interval
from cxguard.model import Outcome, Verdict

NOW = 1_700_000_000.0
DAY = 86_400.0
RECENT_GREET: list[Outcome] = ["pass"] * 30 + ["fail"] * 10 + ["undetermined"] * 10
RECENT_CLOSE: list[Outcome] = ["pass"] * 45 + ["fail"] * 5 + ["not_applicable"] * 20


def _verdicts(
    tenant: str, assertion: str, outcomes: list[Outcome], at: float, call_prefix: str
) -> list[Verdict]:
    return [
        Verdict(
            call_id=f"{call_prefix}-{i // 10}",
            tenant=tenant,
            turn_index=i % 10,
            speaker="agent",
            start_ms=0.0,
            end_ms=1.0,
            text="t",
            assertion_id=assertion,
            outcome=o,
            evidence="e",
            decided_at_wall=at + i,
        )
        for i, o in enumerate(outcomes)
    ]


@pytest.fixture
def ledger(url: str) -> Iterator[EvidenceLedger]:
    with EvidenceLedger(url) as led:
        base, recent = NOW - 3 * DAY, NOW - DAY / 2
        # "greet": 95 % -> 60 %, a real drop. "close": steady 90 %. "rare": too few verdicts.
        led.write_verdicts(
            _verdicts("acme", "greet", ["pass"] * 95 + ["fail"] * 5, base, "b-greet")
            + _verdicts("acme", "greet", RECENT_GREET, recent, "r-greet")
            + _verdicts("acme", "close", ["pass"] * 90 + ["fail"] * 10, base, "b-close")
            + _verdicts("acme", "close", RECENT_CLOSE, recent, "r-close")
            + _verdicts("acme", "rare", ["pass"] * 5, base, "b-rare")
            + _verdicts("acme", "rare", ["fail"] * 5, recent, "r-rare")
            # Another tenant whose "greet" collapses must not leak into acme's numbers.
            + _verdicts("globex", "greet", ["pass"] * 50, base, "g-b")
            + _verdicts("globex", "greet", ["fail"] * 50, recent, "g-r")
        )  # fmt: skip
        yield led


def test_statistics_match_reference_values() -> None:
    # R: fisher.test(matrix(c(1, 9, 11, 3), 2))$p.value = 0.002759456
    assert fisher_exact(1, 9, 11, 3) == pytest.approx(0.002759456, rel=1e-6)
    assert fisher_exact(5, 95, 20, 30) == pytest.approx(fisher_exact(20, 30, 5, 95))
    assert fisher_exact(0, 0, 3, 10) == 1.0
    assert fisher_exact(10, 10, 10, 10) == pytest.approx(1.0)
    # BH on (0.01, 0.04, 0.03, 0.2): q = (0.04, 0.0533, 0.0533, 0.2)
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.2]) == pytest.approx(
        [0.04, 0.16 / 3, 0.16 / 3, 0.2]
    )
    # Newcombe (1998) table II example: 56/70 vs 48/80 -> (0.0524, 0.3339) for p1 - p2.
    low, high = newcombe_interval(48, 80, 56, 70)
    assert (low, high) == pytest.approx((0.0524, 0.3339), abs=5e-4)


def test_detects_a_rise_in_deviations_and_records_it_once(ledger: EvidenceLedger) -> None:
    opts = DriftOptions(min_samples=30)
    found = detect_drift(ledger, "acme", now=NOW, options=opts)
    assert ledger.findings() == []  # reading records nothing
    assert [(f.assertion_id, f.kind, f.direction) for f in found] == [("greet", "drift", "worse")]
    (f,) = found
    assert (f.baseline_n, f.recent_n) == (100, 50)  # undetermined counts, n/a does not
    assert f.baseline_rate == pytest.approx(0.05) and f.recent_rate == pytest.approx(0.4)
    assert f.ci_low < f.delta < f.ci_high and f.ci_low > 0
    assert f.q_value <= 0.05
    assert record_findings(ledger, found) == [True]
    assert record_findings(ledger, detect_drift(ledger, "acme", now=NOW + 60, options=opts)) == [
        False
    ]
    (event,) = ledger.findings(tenant="acme", kind="drift_detected")
    assert ledger.events(kind="drift_detected") == []  # never under a call id
    assert event["data"]["assertion_id"] == "greet" and event["data"]["finding_id"] == f.finding_id
    assert ledger.verify(tenant="acme").ok


def test_thresholds_and_tenants(ledger: EvidenceLedger) -> None:
    assert detect_drift(ledger, "acme", now=NOW, options=DriftOptions(alpha=1e-12)) == []
    big = DriftOptions(default_threshold=0.5)
    assert detect_drift(ledger, "acme", now=NOW, options=big) == []
    few = detect_drift(ledger, "acme", now=NOW, options=DriftOptions(min_samples=5))
    assert {f.assertion_id for f in few} == {"greet", "rare"}
    globex = detect_drift(ledger, "globex", now=NOW)
    assert [(f.assertion_id, f.baseline_rate, f.recent_rate) for f in globex] == [
        ("greet", 0.0, 1.0)
    ]
    # Windows that hold no verdicts find nothing.
    assert detect_drift(ledger, "acme", now=NOW + 30 * DAY) == []
    assert ledger.findings(kind="drift_detected") == []


def test_governance_report(url: str, ledger: EvidenceLedger) -> None:
    drift = detect_drift(ledger, "acme", now=NOW)
    report = governance_report(ledger, "acme", drift=drift, failures_per_assertion=3)
    data = report.to_dict()
    json.dumps(data)
    by_id = {a["assertion_id"]: a for a in data["assertions"]}
    assert list(by_id) == ["close", "greet", "rare"]
    assert by_id["greet"]["counts"] == {
        "pass": 125,
        "fail": 15,
        "not_applicable": 0,
        "undetermined": 10,
    }
    assert by_id["greet"]["undetermined"] == 10 and by_id["greet"]["total"] == 150
    assert by_id["greet"]["pass_rate"] == pytest.approx(125 / 150)
    assert by_id["close"]["pass_rate"] == pytest.approx(135 / 150)  # n/a left out
    assert by_id["greet"]["failures"] == [
        {"call_id": "b-greet-9", "turn": 5},
        {"call_id": "b-greet-9", "turn": 6},
        {"call_id": "b-greet-9", "turn": 7},
    ]
    assert data["calls"] == 34 and data["chain"]["ok"] is True
    assert [d["assertion_id"] for d in data["drift"]] == ["greet"]

    md = report.to_markdown()
    assert "| `greet` | 150 | 125 | 15 | 0 | 10 | 83.3% |" in md
    assert "`b-greet-9` turn 5" in md and "Hash chain intact" in md
    assert "deviation rate worse 5.0% → 40.0%" in md

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE verdicts SET outcome = 'pass' WHERE call_id = 'r-greet-3'")
    engine.dispose()
    broken = governance_report(ledger, "acme")
    assert broken.chain is not None and not broken.chain.ok
    assert "**BROKEN**" in broken.to_markdown() and "r-greet-3" in broken.to_markdown()
    assert broken.to_dict()["chain"]["problems"][0]["table"] == "verdicts"


def test_report_without_verification(ledger: EvidenceLedger) -> None:
    report = governance_report(ledger, "globex", verify=False, since=NOW - DAY)
    assert report.chain is None and "Not verified." in report.to_markdown()
    ((summary),) = report.assertions
    assert summary.counts["fail"] == 50 and summary.pass_rate == 0.0
