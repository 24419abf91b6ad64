"""The default (semantic) billing pack (regex OR classifier) on the bundled demo call.

``cxguard/data/policies/billing.yaml`` keeps every id of the default pack and
adds a ``kind: classifier`` branch next to each regex; on the demo call it must reach exactly
the verdicts the demo is labelled with, through the real engine and the real ONNX models.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cxguard.policy.classifier import ClassifierOptions, OnnxTextScorer
from cxguard.policy.engine import PolicyEngine
from cxguard.policy.matchers import TurnView, match
from cxguard.policy.offline import evaluate_transcript, load_transcript
from cxguard.policy.pack import load_pack
from cxguard.policy.spec import AnyMatcher, ClassifierMatcher

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "cxguard" / "data" / "policies" / "billing.yaml"


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    scorer = OnnxTextScorer(ClassifierOptions(models_dir=ROOT / "models"))
    return PolicyEngine(load_pack(PACK), scorer)


def test_pack_thresholds_are_the_manifest_thresholds(engine: PolicyEngine) -> None:
    assert engine.scorer is not None
    pack = load_pack(PACK)
    scorer = engine.scorer
    assert isinstance(scorer, OnnxTextScorer)
    manifest = {**scorer.thresholds("agent"), **scorer.thresholds("customer")}
    assert pack.thresholds
    for label, threshold in pack.thresholds.items():
        assert threshold == pytest.approx(manifest[label], abs=1e-4)


def test_demo_call_gets_exactly_its_labelled_verdicts(engine: PolicyEngine) -> None:
    lines = load_transcript(ROOT / "tests" / "data" / "transcripts" / "demo_call.jsonl")
    rows = list(evaluate_transcript(lines, engine))
    got = {(r["line"], r["assertion"]): r["verdict"] for r in rows}
    expected = {
        (n, a): v for n, line in enumerate(lines) for a, v in line.get("expect", {}).items()
    }
    assert expected
    for key, verdict in expected.items():
        assert got.get(key) == verdict, (key, [r for r in rows if r["line"] == key[0]])
    for key, verdict in got.items():
        if key not in expected:
            assert verdict in ("pass", "not_applicable"), (key, verdict, lines[key[0]])
    scored = [r for r in rows if r.get("scores")]
    assert scored, "classifier scores must reach the verdict evidence"


def _closure_classifier(engine: PolicyEngine) -> ClassifierMatcher:
    pack = load_pack(PACK)
    trigger = next(i for i in pack.state.intents if i.intent == "account_closure").match
    assert isinstance(trigger, AnyMatcher)
    found = next(m for m in trigger.any if isinstance(m, ClassifierMatcher))
    assert found.label == "customer.closure" and found.unless
    return found


def test_an_excuse_covers_only_its_own_words(engine: PolicyEngine) -> None:
    """The closure classifier's guards are scoped: the excused words are cut out and the rest
    re-scored. A negated closure leaves nothing that asks to close; a negation elsewhere in
    the turn does not veto a request next to it (the regex branch is not involved here)."""
    spec = _closure_classifier(engine)
    thresholds = load_pack(PACK).thresholds

    def hit(text: str) -> tuple[bool, str]:
        h = match(spec, TurnView(text, "customer", engine.scorer, thresholds))
        return h.matched, h.evidence

    matched, evidence = hit("No, I do not want to close my account.")
    assert not matched
    assert "do not want to close" in evidence
    matched, evidence = hit(
        "I don't want to switch providers. I just want you to shut my account down today."
    )
    assert matched, evidence
    assert "without" in evidence or "excused" not in evidence


def test_asking_about_a_closure_is_not_processing_it(engine: PolicyEngine) -> None:
    """The processes-closure classifier excuses question sentences (an offer or a question is
    not the closure) and nothing else: the statement next to a question still counts."""
    pack = load_pack(PACK)
    closure = next(a for a in pack.assertions if a.id == "billing.closure_escalation")
    forbid = getattr(closure, "forbid", None)
    assert isinstance(forbid, AnyMatcher)
    spec = next(m for m in forbid.any if isinstance(m, ClassifierMatcher))
    assert spec.label == "agent.processes_closure" and spec.unless

    def hit(text: str) -> bool:
        return match(spec, TurnView(text, "agent", engine.scorer, pack.thresholds)).matched

    closing = "I have now closed your account, effective today."
    assert hit(closing)
    assert hit(f"{closing} Is there anything else I can help you with?")
    scores = engine.scorer.score
    for question in (
        "Would you like me to terminate your account and send the final bill?",
        "When would you like to end it?",
    ):
        # The classifier alone takes these for the closure; the excuse is what clears them.
        assert scores([question], "agent")[0][spec.label] >= pack.thresholds[spec.label]
        assert not hit(question), question
        assert hit(f"{closing} {question}"), question


def test_escalation_excuses_callbacks_holds_and_teams_working_the_case(
    engine: PolicyEngine,
) -> None:
    """Escalation is handing the caller to a person now: a call-back, a hold for the agent's
    own look-up, or a team put to work on the case is not one, on either branch; a real
    transfer in the same turn still is."""
    pack = load_pack(PACK)
    closure = next(a for a in pack.assertions if a.id == "billing.closure_escalation")
    require = getattr(closure, "require", None)
    assert isinstance(require, AnyMatcher)

    def hit(text: str) -> bool:
        view = TurnView(text, "agent", engine.scorer, pack.thresholds)
        return any(match(m, view).matched for m in require.any)

    transfer = "Let me transfer you to a specialist now."
    assert hit(transfer)
    assert hit("I'll transfer you now, and if we get cut off I'll call you back.")
    working = "I am going to get our billing team working on this right away."
    # The classifier alone takes a team put to work for a handover; the excuse clears it.
    assert (
        engine.scorer.score([working], "agent")[0]["agent.escalation"]
        >= pack.thresholds["agent.escalation"]
    )
    for text in (
        working,
        "I'll get our technical team on it.",
        "I can call you back tomorrow once I have a manager on the line.",
        "Can I put you on a short hold while I pull up your file?",
    ):
        assert not hit(text), text
        assert hit(f"{text} {transfer}"), text
