"""`cxguard policy compare`: what promoting a shadow assertion would have changed, counted
from the ledger's verdicts as the live path raises alerts (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import sys

from cxguard.evidence import EvidenceLedger
from cxguard.evidence.compare import compare_shadow
from cxguard.model import Verdict

NOW = 1_790_000_000.0


def _v(call: str, turn: int, assertion: str, outcome: str, **kw: object) -> Verdict:
    fields: dict[str, object] = {
        "call_id": call,
        "tenant": "acme",
        "turn_index": turn,
        "speaker": "agent",
        "start_ms": 0.0,
        "end_ms": 1.0,
        "text": "t",
        "assertion_id": assertion,
        "outcome": outcome,
        "evidence": "e",
        "decided_at_wall": NOW + turn,
        "release_id": "rel-0000000000000001",
    }
    fields.update(kw)
    return Verdict(**fields)  # type: ignore[arg-type]


def _fill(led: EvidenceLedger) -> None:
    shadow = {"mode": "shadow", "actions": ("alert", "handoff")}
    led.write_verdicts(
        [
            _v("A", 1, "live.one", "fail", actions=("alert",)),
            _v("A", 1, "trial", "fail", **shadow),
            _v("A", 3, "live.one", "pass"),
            _v("A", 3, "trial", "fail", **shadow),
            _v("A", 5, "live.one", "undetermined"),
            _v("A", 5, "live.two", "undetermined"),
            _v("A", 5, "trial", "undetermined", mode="shadow"),
            _v("B", 1, "live.one", "fail", actions=("alert", "handoff")),
            _v("B", 1, "trial", "fail", **shadow),
            _v("C", 1, "live.one", "pass"),
            _v("C", 1, "trial", "pass", mode="shadow"),
            _v("C", 3, "trial", "not_applicable", mode="shadow"),
        ]
    )


def test_shadow_impact(url: str) -> None:
    with EvidenceLedger(url) as led:
        _fill(led)
        (impact,) = compare_shadow(led, "acme")
        assert impact.assertion_id == "trial"
        assert (impact.judged, impact.fails, impact.undetermined) == (5, 3, 1)
        # Live: two fails and one undetermined turn; the trial adds its three fails (its
        # undetermined turn was alerted already).
        assert (impact.alerts_live, impact.alerts_if_promoted, impact.added_alerts) == (3, 6, 3)
        assert (impact.turns_alerted_anyway, impact.new_alert_turns) == (2, 1)
        assert (impact.calls_affected, impact.new_handoff_calls) == (2, 1)
        assert compare_shadow(led, "acme", since=NOW + 2)[0].fails == 1
        assert compare_shadow(led, "acme", assertion="live.one") == []
        assert compare_shadow(led, "other") == []

    out = subprocess.run(
        [sys.executable, "-m", "cxguard.cli", "policy", "compare", "--evidence", url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert row["tenant"] == "acme" and row["added_alerts"] == 3
