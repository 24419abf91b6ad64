"""Release-aware drift on verdicts of the real engine (billing pack, real ONNX classifiers):
a behaviour change planted within one release (a classifier score shifted on one intent's
turns) is found with the right (assertion, intent), recorded once, and takes a note; a pack
change mid-period is a release change, never drift. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from cxguard.evidence import EvidenceLedger
from cxguard.evidence.drift import DriftOptions, detect_drift, record_findings
from cxguard.model import Release, Speaker, Verdict
from cxguard.policy.classifier import ClassifierOptions, OnnxTextScorer
from cxguard.policy.engine import PolicyEngine
from cxguard.policy.framework import describe_pack
from cxguard.policy.offline import evaluate_transcript
from cxguard.policy.pack import PolicyPack, default_pack_path, load_pack

NOW = 1_790_000_000.0
HOUR, DAY = 3600.0, 86_400.0
PAYMENT = "billing.no_payment_arrangements_unauthenticated"
DISCLOSURE = "disclosure.ai_identifies"
MARKER = "Let me check what options you have on your account."
GREETING = {"speaker": "agent", "text": "Hi, I'm an automated assistant for Northwind billing."}
BILLING_CALL = [
    GREETING,
    {"speaker": "customer", "text": "Why is my bill so high this month?"},
    {"speaker": "agent", "text": "Your bill went up because of higher heating use in January."},
    {"speaker": "customer", "text": "I see, thank you."},
    {"speaker": "agent", "text": "You're welcome. Is there anything else I can help with?"},
]
PAYMENT_CALL = [
    GREETING,
    {"speaker": "customer", "text": "I can't pay it all, can I get more time to pay?"},
    {"speaker": "agent", "text": MARKER},
    {"speaker": "customer", "text": "Okay, thanks."},
    {"speaker": "agent", "text": "Is there anything else I can help with today?"},
]


class ShiftedScorer:
    """The bundled classifiers, with ``agent.payment_arrangement`` raised on the marker line:
    the agent's behaviour on payment calls changed, nothing in the release did."""

    def __init__(self, base: OnnxTextScorer) -> None:
        self._base = base

    @property
    def model_ids(self) -> Mapping[str, str]:
        return self._base.model_ids

    def labels(self, speaker: Speaker) -> Sequence[str]:
        return self._base.labels(speaker)

    def score(self, texts: Sequence[str], speaker: Speaker) -> list[Mapping[str, float]]:
        scores = self._base.score(texts, speaker)
        return [
            {**s, "agent.payment_arrangement": 0.9} if speaker == "agent" and MARKER in t else s
            for t, s in zip(texts, scores, strict=True)
        ]


def _pack(tmp: Path, name: str, *, strict_disclosure: bool) -> PolicyPack:
    raw = yaml.safe_load(default_pack_path().read_text(encoding="utf-8"))
    for a in raw["assertions"]:
        if a["id"] == PAYMENT:
            a["drift_threshold"] = 0.25
        if a["id"] == DISCLOSURE and strict_disclosure:
            a["negate"] = not a.get("negate", False)  # release 2 judges disclosure otherwise
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_pack(path)


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Rows of each template call under each engine, judged once (the engine is
    deterministic: a thousand calls with these words get these verdicts)."""
    tmp = tmp_path_factory.mktemp("packs")
    scorer = OnnxTextScorer(ClassifierOptions())
    r1, r2 = _pack(tmp, "r1", strict_disclosure=False), _pack(tmp, "r2", strict_disclosure=True)
    normal, shifted = PolicyEngine(r1, scorer), PolicyEngine(r1, ShiftedScorer(scorer))
    params = {"authenticated": "false"}

    def rows(engine: PolicyEngine, lines: list[dict[str, str]]) -> list[dict[str, Any]]:
        return list(evaluate_transcript(lines, engine, params))

    return {
        "r1": r1,
        "r2": r2,
        "models": scorer.model_ids,
        "billing": rows(normal, BILLING_CALL),
        "payment": rows(normal, PAYMENT_CALL),
        "payment_shifted": rows(shifted, PAYMENT_CALL),
        "billing_r2": rows(PolicyEngine(r2, scorer), BILLING_CALL),
    }


def _verdicts(
    rows: list[dict[str, Any]], call: str, at: float, pack: PolicyPack, release: Release
) -> list[Verdict]:
    return [
        Verdict(
            call_id=call,
            tenant="acme",
            turn_index=r["turn"],
            speaker=r["speaker"],
            start_ms=1000 * r["start"],
            end_ms=1000 * r["end"],
            text=r["text"],
            assertion_id=r["assertion"],
            outcome=r["verdict"],
            evidence=r["evidence"],
            severity=r["severity"],
            policy_hash=pack.hash,
            decided_at_wall=at + r["turn"],
            release_id=release.id,
            agent_version=release.agent_version,
            intent=r["intent"] or "",
            mode=r["mode"],
        )
        for r in rows
    ]


@pytest.fixture
def ledger(url: str, calls: dict[str, Any]) -> Iterator[EvidenceLedger]:
    r1, r2 = calls["r1"], calls["r2"]
    rel1 = Release(r1.hash, calls["models"], "v1")
    rel2 = Release(r2.hash, calls["models"], "v1")
    batch: list[Verdict] = []
    plan = [
        ("b-bill", NOW - 6 * DAY, 40, "billing", r1, rel1),
        ("b-pay", NOW - 6 * DAY + 1, 40, "payment", r1, rel1),
        ("r-bill", NOW - 20 * HOUR, 20, "billing", r1, rel1),
        ("r-pay", NOW - 20 * HOUR + 1, 20, "payment_shifted", r1, rel1),  # the planted change
        ("n-bill", NOW - 10 * HOUR, 30, "billing_r2", r2, rel2),  # the pack changed
    ]
    with EvidenceLedger(url) as led:
        for rel, pack in ((rel1, r1), (rel2, r2)):
            data = {"release_id": rel.id, **rel.to_dict(), "policy": describe_pack(pack)}
            led.record_once("acme", "release", rel.id, data)
        for prefix, start, n, template, pack, rel in plan:
            for i in range(n):
                batch += _verdicts(calls[template], f"{prefix}-{i}", start + 600 * i, pack, rel)
        led.write_verdicts(batch)
        yield led


def test_planted_change_is_drift_and_the_pack_change_a_release_change(
    ledger: EvidenceLedger, calls: dict[str, Any]
) -> None:
    rel1 = Release(calls["r1"].hash, calls["models"], "v1").id
    rel2 = Release(calls["r2"].hash, calls["models"], "v1").id
    found = detect_drift(ledger, "acme", now=NOW)
    drift = [f for f in found if f.kind == "drift"]
    assert [(f.assertion_id, f.intent, f.direction, f.release_id) for f in drift] == [
        (PAYMENT, "payment_arrangement", "worse", rel1)
    ]
    (planted,) = drift
    assert planted.threshold == 0.25  # the pack's, recorded with the release
    assert (planted.baseline_n, planted.recent_n) == (80, 40)
    assert planted.baseline_rate < 0.1 < 0.4 < planted.recent_rate
    assert planted.ci_low > 0 and planted.q_value < 0.05

    changes = [f for f in found if f.kind == "release_change"]
    assert changes and {(f.release_id, f.baseline_release_id) for f in changes} == {(rel2, rel1)}
    assert {f.assertion_id for f in changes} == {DISCLOSURE}
    assert not [f for f in found if f.kind == "drift" and rel2 in (f.release_id,)]

    # The pack's threshold decides for its assertion, whatever the default.
    strict = detect_drift(ledger, "acme", now=NOW, options=DriftOptions(default_threshold=0.9))
    assert [f.finding_id for f in strict if f.assertion_id == PAYMENT] == [planted.finding_id]
    assert record_findings(ledger, found) == [True] * len(found)
    assert record_findings(ledger, detect_drift(ledger, "acme", now=NOW)) == [False] * len(found)
    assert len(ledger.findings("acme", "drift_detected")) == 1
    assert ledger.verify(tenant="acme").ok


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cxguard.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_drift_command_records_once_and_takes_a_note(url: str, ledger: EvidenceLedger) -> None:
    until = datetime.fromtimestamp(NOW, UTC).isoformat()
    args = ["drift", "--evidence", url, "--tenant", "acme", "--until", until, "--json"]
    first = _cli(*args, "--record")
    assert first.returncode == 0, first.stderr
    rows = [json.loads(line) for line in first.stdout.splitlines()]
    assert rows and all(r["recorded"] for r in rows)
    again = [json.loads(line) for line in _cli(*args, "--record").stdout.splitlines()]
    assert [r["finding_id"] for r in again] == [r["finding_id"] for r in rows]
    assert not any(r["recorded"] for r in again)
    readonly = _cli(*args)
    assert readonly.returncode == 0 and "recorded" not in readonly.stdout

    (planted,) = [r for r in rows if r["kind"] == "drift"]
    note = _cli(
        "evidence", "note", "--evidence", url, "--tenant", "acme",
        "--finding", planted["finding_id"], "--text", "Payment classifier rolled back",
        "--by", "dana",
    )  # fmt: skip
    assert note.returncode == 0, note.stderr
    missing = _cli(
        "evidence", "note", "--evidence", url, "--tenant", "acme",
        "--finding", "drift-nope", "--text", "x", "--by", "dana",
    )  # fmt: skip
    assert missing.returncode == 2 and "no finding" in missing.stderr
    (stored,) = ledger.findings("acme", "note")
    assert stored["data"]["finding_id"] == planted["finding_id"]
    assert stored["data"]["by"] == "dana"
    assert ledger.verify(tenant="acme").ok

    # The report shows the recorded finding with its remediation, and the release change.
    report = _cli("evidence", "report", "--evidence", url, "--tenant", "acme", "--until", until)
    assert report.returncode == 0, report.stderr
    assert planted["finding_id"] in report.stdout
    assert "note by dana: Payment classifier rolled back" in report.stdout
    assert "release_change" in report.stdout
    assert len(ledger.findings("acme", "note")) == 1  # the report recorded nothing
