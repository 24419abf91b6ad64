"""The command-line contract, run as a user would: real processes, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data"
CLI = [sys.executable, "-m", "cxguard.cli"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=check, timeout=300)


def test_eval_prints_one_line_per_agent_turn_and_assertion(tmp_path: Path) -> None:
    transcript = tmp_path / "call.jsonl"
    transcript.write_text(
        "\n".join(
            json.dumps(line)
            for line in [
                {
                    "speaker": "agent",
                    "text": "Hi, I'm an automated assistant for Northwind billing.",
                },
                {"speaker": "customer", "text": "Can I split my bill into installments?"},
                {
                    "speaker": "agent",
                    "text": "Sure, we can set up a payment plan with three installments.",
                },
                {"event": "authenticated"},
                {"speaker": "customer", "text": "Go ahead, please."},
                {
                    "speaker": "agent",
                    "text": "Now that you're verified: the plan is three installments.",
                },
            ]
        )
        + "\n"
    )
    result = run("eval", str(transcript), check=False)
    assert result.returncode == 1  # a violation fails the gate
    out = result.stdout.splitlines()
    rows = [json.loads(line) for line in out]
    assert {r["line"] for r in rows if r["speaker"] == "agent"} == {0, 2, 5}
    by = {(r["line"], r["assertion"]): r["verdict"] for r in rows}
    assert by[(2, "billing.no_payment_arrangements_unauthenticated")] == "fail"
    assert by[(5, "billing.no_payment_arrangements_unauthenticated")] == "not_applicable"
    assert by[(0, "disclosure.ai_identifies")] == "pass"
    assert all(r["verdict"] in ("pass", "fail", "not_applicable", "undetermined") for r in rows)


def test_eval_reports_bad_input_with_its_line(tmp_path: Path) -> None:
    transcript = tmp_path / "bad.jsonl"
    transcript.write_text('{"speaker": "agent", "text": "hello"}\n{"speaker": 3}\n')
    result = run("eval", str(transcript), check=False)
    assert result.returncode == 2
    assert f"{transcript}:2" in result.stderr


def test_demo_export_and_verify(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    url = f"sqlite:///{db}"
    demo = run("demo", "--fast", "--evidence", url)
    assert "Violations by assertion" in demo.stdout
    assert "billing.closure_escalation" in demo.stdout
    rows = [
        json.loads(line)
        for line in run("evidence", "export", "--evidence", url).stdout.splitlines()
    ]
    assert rows
    assert {"call_id", "turn", "speaker", "start", "end", "text", "assertion", "verdict"} <= rows[
        0
    ].keys()
    assert any(r["verdict"] == "fail" for r in rows)
    assert run("evidence", "verify", "--evidence", url).returncode == 0
    report = run("evidence", "report", "--evidence", url).stdout
    assert "governance report" in report and "Hash chain intact" in report
    assert "billing.closure_escalation" in report

    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE verdicts SET outcome = 'pass' WHERE outcome = 'fail'")
    tampered = run("evidence", "verify", "--evidence", url, check=False)
    assert tampered.returncode == 1


def test_default_pack_passes_its_policy_tests() -> None:
    result = run("policy", "test", check=False)
    assert result.returncode == 0, result.stdout
    from cxguard.policy.pack import default_pack_path, load_pack

    # Every labelled example the bundled pack carries was run, not a fixed count.
    assert f"{len(load_pack(default_pack_path()).spec.tests)} policy tests" in result.stdout
    assert "MISS" not in result.stdout
