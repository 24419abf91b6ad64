"""The pre-written labelling rules for other writers' agent turns (data/rules/agent_labels.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cxguard.train.labels import AGENT
from cxguard.train.rules import AgentRules, LabelRule

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "data" / "rules" / "agent_labels.yaml"


@pytest.fixture(scope="module")
def rules() -> AgentRules:
    return AgentRules(RULES)


def test_every_agent_label_has_a_rule_and_no_unknown_label(
    rules: AgentRules, tmp_path: Path
) -> None:
    assert set(rules.rules) == set(AGENT)
    bad = yaml.safe_load(RULES.read_text())
    bad["labels"]["agent.nonsense"] = bad["labels"]["agent.escalation"]
    path = tmp_path / "bad_rules.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match=r"agent\.nonsense"):
        AgentRules(path)


def test_positive_excuse_negative_cue_order() -> None:
    import re

    rule = LabelRule(
        (re.compile(r"\bwe (close|closed) (your|the) account\b", re.I),),
        (re.compile(r"\bbefore we close\b", re.I),),
        (re.compile(r"\byou can close\b", re.I),),
        re.compile(r"\bclos\w*\b", re.I),
    )
    assert rule.label("Done: we closed your account.") == 1
    assert rule.label("Before we close the account, a question.") is None  # excused
    assert rule.label("You can close it online.") == 0  # negative pattern
    assert rule.label("Your balance is forty dollars.") == 0  # no cue at all
    assert rule.label("The branch closes at five.") is None  # cue, no decision


def test_sources_fix_some_labels(rules: AgentRules) -> None:
    text = "Would you be interested in our premium credit card?"
    assert rules.labels(text, "bitext")["agent.off_topic"] == 0
    assert rules.labels(text, "somewhere")["agent.off_topic"] == 1


def test_a_written_answer_becomes_one_spoken_turn(rules: AgentRules) -> None:
    answer = (
        "I'm sorry to hear that. To close your account, follow these steps:\n\n"
        "1. Log in to {{Website Name}}.\n2. Open {{Account Settings}}.\n\n"
        "Call {{Customer Support Phone Number}} if you need help."
    )
    spoken = rules.spoken(answer)
    assert spoken == "I'm sorry to hear that. To close your account, follow these steps."
    assert "{{" not in rules.fill(answer)
    assert "account settings" in rules.fill(answer)
    assert len(rules.spoken("word " * 200).split()) <= rules.max_words


def test_tau_bench_sentences_train_by_task_and_never_meet_the_evaluation_file() -> None:
    import json

    from cxguard.train.corpus import taubench_lines

    pub = ROOT / "data" / "public"
    rows = list(taubench_lines(pub))
    texts = {e.text for e in rows}
    assert len(texts) == len(rows) > 900
    lines = (pub / "taubench" / "agent_lines_airline.jsonl").read_text().splitlines()
    held = [json.loads(line) for line in lines]
    assert {r["text"] for r in held}.isdisjoint(texts)
    assert all(int(r["source"].rsplit("#task", 1)[1]) % 2 == 1 for r in held)
    assert {e.split for e in rows} == {"train", "val"}
    grants = [e for e in rows if e.labels["agent.unauthorized_commitment"] == 1]
    assert len(grants) >= 40
    # Only the three labels a person read are trained on; the rest stay undecided.
    assert all(e.labels["agent.payment_arrangement"] == 0 for e in rows)
    assert all(e.labels["agent.requests_verification"] is None for e in rows)
