"""Offline evaluation with the default billing pack on labelled transcripts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cxguard.errors import PolicyError
from cxguard.policy.engine import PolicyEngine
from cxguard.policy.offline import evaluate_transcript, load_transcript, score_expectations
from cxguard.policy.pack import default_pack_path, load_pack

# These transcripts measure the deterministic rules; the semantic pack has its own tests.
RULES = default_pack_path().with_name("billing-rules.yaml")

ROOT = Path(__file__).resolve().parents[1]
TRANSCRIPTS = ROOT / "tests" / "data" / "transcripts"
DEV = [
    "probe_lines",
    "demo_call",
    "clean_call",
    "hard_negatives_call",
    "violations_call",
    "asr_errors_call",
    "escalation_call",
]
HELD_OUT = ["heldout_1", "heldout_2", "heldout_3"]
DISCLOSURE = "disclosure.ai_identifies"
ASSERTIONS = sorted(a.id for a in load_pack(RULES).assertions)


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine(load_pack(RULES))


def _run(name: str, engine: PolicyEngine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    lines = load_transcript(TRANSCRIPTS / f"{name}.jsonl")
    return lines, list(evaluate_transcript(lines, engine))


def test_demo_transcript_is_the_bundled_demo_dialogue() -> None:
    dialogue = json.loads((ROOT / "cxguard/data/demo/dialogue.json").read_text("utf-8"))
    lines = load_transcript(TRANSCRIPTS / "demo_call.jsonl")
    assert lines[0] == {"parameters": dialogue["call"]["parameters"]}
    assert [
        {k: t[k] for k in ("speaker", "text", "expect") if k in t} for t in dialogue["turns"]
    ] == lines[1:]


@pytest.mark.parametrize("name", DEV)
def test_labelled_transcripts_get_exactly_the_expected_verdicts(
    name: str, engine: PolicyEngine
) -> None:
    lines, rows = _run(name, engine)
    got = {(r["line"], r["assertion"]): r["verdict"] for r in rows}
    expected = {
        (n, a): v for n, line in enumerate(lines) for a, v in line.get("expect", {}).items()
    }
    for key, verdict in expected.items():
        assert got.get(key) == verdict, (key, [r for r in rows if r["line"] == key[0]])
    for key, verdict in got.items():
        if key not in expected:
            assert verdict in ("pass", "not_applicable"), (key, verdict)
    agent_lines = [n for n, line in enumerate(lines) if line.get("speaker") == "agent"]
    for n in agent_lines:  # one verdict per (agent turn, assertion), whenever it came
        assert sorted(r["assertion"] for r in rows if r["line"] == n) == ASSERTIONS


def test_held_out_transcripts_precision_and_recall(engine: PolicyEngine) -> None:
    """Written before the last rule changes; measured, not tuned on. See the report."""
    totals = [0, 0, 0, 0]
    for name in HELD_OUT:
        lines, rows = _run(name, engine)
        for c in score_expectations(lines, rows).values():
            totals = [a + b for a, b in zip(totals, (c.tp, c.fp, c.fn, c.tn), strict=True)]
    tp, fp, fn, tn = totals
    assert fp == 0 and tp >= 5 and tp + fn == 7 and tn >= 100


def test_evaluation_is_deterministic(engine: PolicyEngine) -> None:
    lines = load_transcript(TRANSCRIPTS / "demo_call.jsonl")
    first = list(evaluate_transcript(lines, engine))
    again = list(evaluate_transcript(lines, PolicyEngine(load_pack(RULES))))
    assert first == again
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)


def test_rows_events_finish_and_blank_lines(engine: PolicyEngine) -> None:
    lines: list[dict[str, Any]] = [
        {"speaker": "agent", "text": "Hi, I'm a virtual assistant.", "start": 0, "end": 2},
        {},
        {"speaker": "customer", "text": "I want to cancel my account.", "start": 2.5, "end": 4},
        {"event": "intent", "intent": "account_closure"},
        {"speaker": "customer", "undetermined": "asr_failed", "start": 5, "end": 6},
    ]
    rows = list(evaluate_transcript(lines, engine))
    first = rows[0]
    assert first == {
        "line": 0,
        "lines": [0],
        "turn": 0,
        "speaker": "agent",
        "start": 0.0,
        "end": 2.0,
        "text": "Hi, I'm a virtual assistant.",
        "assertion": "disclosure.ai_identifies",
        "verdict": "pass",
        "evidence": 'pattern 1 matched "virtual assistant" at chars 10-27',
        "scores": {},
        "severity": "major",
        "actions": [],
        "trigger_turn": None,
        "phase": "turn",
        "intent": None,
        "mode": "live",
    }
    rest = [(r["lines"], r["turn"], r["assertion"], r["verdict"], r["phase"]) for r in rows[6:]]
    # The two customer lines are one turn, partly unreadable: its heard words raise the
    # obligation, which fails at the end of the call, on that turn.
    assert rest == [([2, 4], 1, "billing.closure_escalation", "fail", "finish")]
    assert rows[-1]["actions"] == ["alert", "handoff"]
    assert "call ended at 6.0 s" in rows[-1]["evidence"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"speaker": "bot", "text": "x"}, "line 2: speaker must be 'agent' or 'customer'"),
        ({"speaker": "agent"}, "line 2: a turn needs 'text'"),
        ({"speaker": "agent", "text": "x", "start": -1}, "line 2: 'start' must be"),
        ({"speaker": "agent", "text": "x", "start": 3, "end": 1}, "line 2: 'end' is before"),
        ({"speaker": "agent", "text": "x", "speeker": 1}, "line 2: unknown key(s) speeker"),
        ({"speaker": "agent", "text": "x", "expect": {"a": "bad"}}, "line 2: 'expect' maps"),
        ({"event": "intent", "intent": 3}, "line 2: event data must be strings (intent)"),
        ({"parameters": {"authenticated": "true"}}, "line 2: 'parameters' must be alone"),
        ({"text": "who?"}, "line 2: expected a turn ('speaker') or an 'event'"),
        ({"event": "intent"}, "line 2: intent event at 1750.0 ms has no 'intent' value"),
    ],
)
def test_bad_lines_name_their_line(
    engine: PolicyEngine, line: dict[str, Any], message: str
) -> None:
    lines = [{"speaker": "agent", "text": "Hi, I'm a virtual assistant."}, line]
    with pytest.raises(PolicyError, match=re.escape("transcript " + message)):
        list(evaluate_transcript(lines, engine))


def test_load_transcript_errors_name_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"speaker": "agent", "text": "hi"}\n\n{oops\n', encoding="utf-8")
    with pytest.raises(PolicyError, match=r"t\.jsonl:3: not JSON"):
        load_transcript(path)
    path.write_text('{"speaker": "agent", "text": "hi"}\n\n[1]\n', encoding="utf-8")
    with pytest.raises(PolicyError, match=r"t\.jsonl:3: expected a JSON object"):
        load_transcript(path)
    path.write_text('{"speaker": "agent", "text": "hi"}\n\n', encoding="utf-8")
    assert load_transcript(path) == [{"speaker": "agent", "text": "hi"}, {}]


def test_score_expectations_counts_fail_as_positive(engine: PolicyEngine) -> None:
    lines, rows = _run("violations_call", engine)
    counts = score_expectations(lines, rows)
    assert set(counts) == {
        "billing.intent_scope",
        "billing.no_payment_arrangements_unauthenticated",
        "billing.closure_escalation",
        "pii.no_full_card_number",
        "commitments.no_unauthorized_promises",
        "disclosure.ai_identifies",
    }
    assert all(c.tp == 1 and c.fp == 0 and c.fn == 0 and c.tn == 5 for c in counts.values())
    assert counts["pii.no_full_card_number"].precision == 1.0
    lines[3] = {**lines[3], "expect": {"billing.intent_scope": "fail"}}  # a wrong label
    wrong = score_expectations(lines, rows)["billing.intent_scope"]
    assert (wrong.tp, wrong.fn, wrong.recall) == (1, 1, 0.5)


def test_lines_make_turns_as_live_segments_do(engine: PolicyEngine) -> None:
    lines: list[dict[str, Any]] = [
        {"speaker": "agent", "text": "Hello.", "start": 0.5, "end": 1.0},
        {"speaker": "agent", "text": "I'm a virtual assistant.", "start": 1.8, "end": 3.5},
        {"speaker": "customer", "text": "Hi, a question about my bill.", "start": 4.2, "end": 6},
        {"speaker": "agent", "text": "Your bill went up", "start": 6.7, "end": 8.0},
        {"speaker": "customer", "text": "Mm-hm.", "start": 8.1, "end": 8.5},
        {"speaker": "agent", "text": "because of the weather.", "start": 8.9, "end": 10},
        {"speaker": "agent", "text": "Anything else?", "start": 12.0, "end": 13.0},
        # Overlap: the customer's second segment closes before the agent's long one.
        {"speaker": "customer", "text": "No.", "start": 13.4, "end": 13.8},
        {"speaker": "customer", "text": "Well, yes.", "start": 15.7, "end": 16.5},
        {"speaker": "agent", "text": "Go ahead, I'm listening.", "start": 14.0, "end": 17.5},
    ]
    rows = list(evaluate_transcript(lines, engine))
    turns = sorted({(r["turn"], tuple(r["lines"])) for r in rows})
    agent = [t for t in turns if lines[t[1][0]]["speaker"] == "agent"]
    # The paused greeting is one turn and discloses; "Mm-hm." is not a turn; a 2 s silence
    # ends a turn; the agent speaking 1.7 s over the customer's silence took the floor.
    assert agent == [(0, (0, 1)), (2, (3, 5)), (3, (6,)), (6, (9,))]
    assert {(r["turn"], r["verdict"]) for r in rows if r["assertion"] == DISCLOSURE} == {
        (0, "pass"),
        (2, "not_applicable"),
        (3, "not_applicable"),
        (6, "not_applicable"),
    }
