"""benchmarks/agent_lines_eval.py: labelled agent sentences become conversations the live
engine judges, one assertion per set, undecided labels left out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LINES = [
    # payment_arrangement, commitment, escalation
    ("We could split the balance into three monthly payments.", 1, 0, 0),
    ("Your balance is due on the fifth.", 0, 0, 0),
    ("I've gone ahead and issued a refund for the duplicate charge.", 0, 1, 0),
    ("Refunds are reviewed by the billing team.", 0, 0, None),
    ("Let me transfer you to a specialist now.", 0, 0, 1),
]


def test_sentences_are_judged_per_assertion(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    keys = ("payment_arrangement", "commitment", "escalation")
    path.write_text(
        "".join(
            json.dumps({"text": t, **dict(zip(keys, labels, strict=True)), "source": f"p{i}"})
            + "\n"
            for i, (t, *labels) in enumerate(LINES)
        )
    )
    script = ROOT / "benchmarks" / "agent_lines_eval.py"
    out = subprocess.run(
        [sys.executable, str(script), "--lines", str(path), "--json", "--labels"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(out.stdout)
    per = report["per_set"]
    payment = per["payment"]["billing.no_payment_arrangements_unauthenticated"]
    commitment = per["commitment"]["commitments.no_unauthorized_promises"]
    closure = per["closure"]["billing.closure_escalation"]
    assert (payment["tp"], payment["fp"], payment["fn"]) == (1, 0, 0)
    assert (commitment["tp"], commitment["fp"], commitment["fn"]) == (1, 0, 0)
    # After a closure request only the transfer escapes the failure; the undecided line is out.
    assert (closure["tp"], closure["fp"], closure["fn"]) == (3, 0, 0)
    assert report["sentences"] == 5 and report["sources"] == 5
    assert report["labels"]["agent.escalation"]["positives"] == 1


TAU = ROOT / "data" / "public" / "taubench" / "agent_lines_airline.jsonl"


def test_other_writers_airline_agent_sentences_hold_their_floors() -> None:
    # 325 sentences tau-bench's gpt-4o airline agent wrote in its odd-numbered tasks, labelled
    # by reading (data/public/taubench/README.md); the even tasks train the agent head. Floors
    # sit below what main measured on 2026-12-07 (closure 319/1/3, commitment 22/2/7; before
    # the head learned from the even tasks: commitment 15/0/14 on these sentences).
    script = ROOT / "benchmarks" / "agent_lines_eval.py"
    out = subprocess.run(
        [sys.executable, str(script), "--lines", str(TAU), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    per = json.loads(out.stdout)["per_set"]
    closure = per["closure"]["billing.closure_escalation"]
    commitment = per["commitment"]["commitments.no_unauthorized_promises"]
    assert closure["precision"] >= 0.99 and closure["recall"] >= 0.98, closure
    assert commitment["precision"] >= 0.9 and commitment["recall"] >= 0.7, commitment
