"""The policy engine: each assertion kind, state conditions, classifiers, undetermined turns."""

from __future__ import annotations

import re

import pytest
from test_policy_support import KeywordScorer, Turns, pack

from cxguard.errors import PolicyError
from cxguard.model import ControlEvent
from cxguard.policy.engine import AssertionResult, PolicyEngine


def _by_id(results: list[AssertionResult]) -> dict[str, AssertionResult]:
    return {r.assertion_id: r for r in results}


TEXT_PACK = """
assertions:
  - id: no.guarantee
    kind: regex
    negate: true
    severity: critical
    on_fail: [alert, handoff]
    patterns: ['\\bguarantee']
    unless: ['can''t guarantee']
  - id: says.hello
    kind: contains
    phrases: [hello there]
  - id: exact.case
    kind: regex
    negate: true
    ignore_case: false
    patterns: ['ACME']
  - id: no.card
    kind: check
    negate: true
    checks: [card_number, ssn]
  - id: polite
    kind: any
    any:
      - {kind: contains, phrases: [please]}
      - {kind: contains, phrases: [thank you]}
"""


def test_text_kinds_pass_and_fail_with_evidence() -> None:
    call = PolicyEngine(pack(TEXT_PACK)).start()
    turn = Turns()
    first = _by_id(call.evaluate(turn("agent", "Hello there! I guarantee a refund, acme.")))
    assert first["no.guarantee"].outcome == "fail"
    assert first["no.guarantee"].evidence == 'pattern 1 matched "guarantee" at chars 15-24'
    assert first["no.guarantee"].actions == ("alert", "handoff")
    assert first["no.guarantee"].severity == "critical"
    assert first["says.hello"].outcome == "pass"
    assert first["exact.case"].outcome == "pass"  # "acme" is not "ACME"
    assert first["no.card"].outcome == "pass"
    assert first["polite"].outcome == "fail"
    assert first["polite"].evidence.startswith("required but absent: ")
    assert first["polite"].actions == ("alert",)

    second = _by_id(
        call.evaluate(turn("agent", "I can’t guarantee it. ACME card 4111 1111 1111 1111, please"))
    )
    assert second["no.guarantee"].outcome == "pass"  # curly apostrophe normalised, excused
    assert second["no.guarantee"].evidence == 'no match ("guarantee" excused by "can\'t guarantee")'
    assert second["says.hello"].outcome == "fail"  # whole words: "hello there" absent
    assert second["exact.case"].outcome == "fail"
    assert second["no.card"].outcome == "fail"
    assert "ending 1111" in second["no.card"].evidence
    assert second["polite"].outcome == "pass"
    assert all(r.turn_index == 1 and r.speaker == "agent" for r in second.values())
    assert all(r.actions == () for r in second.values() if r.outcome == "pass")


def test_customer_turns_get_no_results_unless_an_assertion_judges_them() -> None:
    p = pack(
        TEXT_PACK + "  - {id: abuse, kind: contains, negate: true, phrases: idiot, "
        "when: {speaker: customer}}\n"
    )
    call = PolicyEngine(p).start()
    turn = Turns()
    results = call.evaluate(turn("customer", "you idiot, I guarantee it"))
    assert [(r.assertion_id, r.outcome) for r in results] == [("abuse", "fail")]
    assert [r.assertion_id for r in call.evaluate(turn("agent", "hi"))] == [
        "no.guarantee",
        "says.hello",
        "exact.case",
        "no.card",
        "polite",
    ]


STATE_PACK = """
state:
  authenticate_on_agent_confirmation: true
  agent_confirmation: {kind: regex, patterns: ['\\bi have verified you\\b']}
  intents:
    - intent: closure
      match: {kind: contains, phrases: [close my account]}
    - intent: billing
      match: {kind: contains, phrases: [bill]}
assertions:
  - id: auth.only
    kind: contains
    negate: true
    phrases: [payment plan]
    when: {authenticated: false}
  - id: first.turn
    kind: contains
    phrases: [virtual assistant]
    when: {agent_turn: 1}
  - id: billing.only
    kind: contains
    negate: true
    phrases: [upgrade]
    when: {intent: [billing], intent_not: [closure]}
  - id: early
    kind: contains
    negate: true
    phrases: [goodbye]
    when: {turn_index: {max: 2}}
"""


def test_state_conditions_and_trusted_authentication() -> None:
    call = PolicyEngine(pack(STATE_PACK)).start({"authenticated": "false"})
    turn = Turns()
    r = _by_id(call.evaluate(turn("agent", "I'm a virtual assistant. Payment plan? Goodbye")))
    assert r["auth.only"].outcome == "fail"
    assert r["first.turn"].outcome == "pass"
    assert r["billing.only"].outcome == "not_applicable"
    assert r["billing.only"].evidence == "applies to intent billing; intent is unknown"
    assert r["early"].outcome == "fail"

    assert call.evaluate(turn("customer", "A question about my bill")) == []
    assert call.state.intent == "billing"
    r = _by_id(call.evaluate(turn("agent", "Want an upgrade? Goodbye")))
    assert r["billing.only"].outcome == "fail"
    assert r["first.turn"].outcome == "not_applicable"
    assert r["first.turn"].evidence == "applies to agent turn 1; this is agent turn 2"
    assert r["early"].outcome == "fail"  # turn index 2

    call.observe(ControlEvent("authenticated", at_ms=5000.0))
    assert call.state.authenticated and call.state.auth_source == "authenticated event at 5.0 s"
    r = _by_id(call.evaluate(turn("agent", "About that payment plan. Goodbye")))
    assert r["auth.only"].outcome == "not_applicable"
    assert r["early"].outcome == "not_applicable"

    call.observe(ControlEvent("unauthenticated", at_ms=6000.0))
    call.evaluate(turn("customer", "Actually close my account"))
    assert call.state.intent == "closure"
    r = _by_id(call.evaluate(turn("agent", "I have verified you. Payment plan and upgrade?")))
    assert r["auth.only"].outcome == "not_applicable"  # confirmation applies to its own turn
    assert "agent confirmed on turn 5" in r["auth.only"].evidence
    assert r["billing.only"].outcome == "not_applicable"

    call.observe(ControlEvent("intent", at_ms=9000.0, data={"intent": "billing"}))
    assert call.state.intent == "billing" and call.state.intent_source.startswith("intent event")
    with pytest.raises(PolicyError, match="no 'intent' value"):
        call.observe(ControlEvent("intent", at_ms=9000.0))
    assert call.observe(ControlEvent("recording_paused", at_ms=9500.0)) == []


def test_call_parameters_are_trusted_signals() -> None:
    engine = PolicyEngine(pack(STATE_PACK))
    assert engine.start({"authenticated": "true", "intent": "billing"}).state.authenticated
    assert engine.start({"authenticated": "TRUE"}).state.auth_source == "call parameter"
    assert not engine.start({"authenticated": "maybe"}).state.authenticated
    assert engine.start({"intent": "billing"}).state.intent == "billing"


def test_agent_confirmation_is_ignored_unless_the_pack_enables_it() -> None:
    p = pack(
        STATE_PACK.replace(
            "authenticate_on_agent_confirmation: true", "authenticate_on_agent_confirmation: false"
        )
    )
    call = PolicyEngine(p).start()
    turn = Turns()
    r = _by_id(call.evaluate(turn("agent", "I have verified you. Payment plan?")))
    assert r["auth.only"].outcome == "fail" and not call.state.authenticated


CLASSIFIER_PACK = """
classifier:
  thresholds: {agent.upsell: 0.5, agent.disclosure: 0.5, customer.closure: 0.5}
state:
  intents:
    - intent: closure
      match: {kind: classifier, label: customer.closure}
assertions:
  - id: no.upsell
    kind: classifier
    label: agent.upsell
    negate: true
  - id: disclose
    kind: classifier
    label: agent.disclosure
    threshold: 0.95
  - id: closure.scope
    kind: any
    negate: true
    when: {intent: closure}
    any:
      - {kind: regex, patterns: ['\\bbundle\\b']}
      - {kind: classifier, label: agent.upsell}
"""


def _scorer() -> KeywordScorer:
    return KeywordScorer(
        {
            "agent": {"agent.upsell": ["premium", "bundle"], "agent.disclosure": ["virtual"]},
            "customer": {"customer.closure": ["close", "clone"]},
        }
    )


def test_classifier_scores_thresholds_and_state_updates() -> None:
    scorer = _scorer()
    engine = PolicyEngine(pack(CLASSIFIER_PACK), scorer)
    assert engine.model_ids == {"keywords": "test-1"}
    call = engine.start()
    turn = Turns()
    r = _by_id(call.evaluate(turn("agent", "I'm virtual. Want premium?")))
    assert r["no.upsell"].outcome == "fail"
    assert r["no.upsell"].scores == {"agent.upsell": 0.9}
    assert r["no.upsell"].evidence == "agent.upsell=0.900 >= 0.50"
    assert r["disclose"].outcome == "fail"  # 0.9 < its own threshold 0.95
    assert r["disclose"].evidence == "required but absent: agent.disclosure=0.900 < 0.95"
    assert r["closure.scope"].outcome == "not_applicable"
    call.evaluate(turn("customer", "I want to clone my account"))
    assert call.state.intent == "closure"
    r = _by_id(call.evaluate(turn("agent", "Sure, one moment")))
    assert r["closure.scope"].outcome == "pass"
    assert r["closure.scope"].scores == {"agent.upsell": 0.1}
    # One batched scorer call per turn, whatever the number of classifier matchers.
    assert scorer.calls == [("agent", 1), ("customer", 1), ("agent", 1)]


def test_classifier_failure_is_undetermined_never_a_silent_pass() -> None:
    call = PolicyEngine(pack(CLASSIFIER_PACK), _scorer()).start({"intent": "closure"})
    turn = Turns()
    r = _by_id(call.evaluate(turn("agent", "BOOM premium")))
    assert r["no.upsell"].outcome == "undetermined"
    assert r["no.upsell"].evidence == "classifier failed: onnx session failed"
    assert r["no.upsell"].actions == ("alert",)
    assert r["closure.scope"].outcome == "undetermined"
    r = _by_id(call.evaluate(turn("agent", "BOOM bundle")))
    assert r["closure.scope"].outcome == "fail"  # the regex alone decides
    # A failed intent classifier on a customer turn: assertions reading intent are unsure.
    results = call.evaluate(turn("customer", "BOOM"))
    assert [(x.assertion_id, x.outcome) for x in results] == [("closure.scope", "undetermined")]


def test_scorer_requirements_are_checked_up_front() -> None:
    p = pack(CLASSIFIER_PACK)
    with pytest.raises(
        PolicyError,
        match=re.escape(
            "needs a classifier for labels agent.disclosure, agent.upsell, customer.closure"
        ),
    ):
        PolicyEngine(p)
    partial = KeywordScorer({"agent": {"agent.upsell": ["x"]}, "customer": {}})
    with pytest.raises(
        PolicyError, match=re.escape("labels agent.disclosure of pack 'test' are unknown")
    ):
        PolicyEngine(p, partial)
    call = PolicyEngine(p, missing_scorer="undetermined").start()
    r = _by_id(call.evaluate(Turns()("agent", "hello")))
    assert r["no.upsell"].outcome == "undetermined"
    assert r["no.upsell"].evidence == "no classifier loaded"


def test_unreadable_agent_turn_is_undetermined_where_it_would_be_looked_at() -> None:
    call = PolicyEngine(pack(STATE_PACK)).start({"authenticated": "true"})
    turn = Turns()
    r = _by_id(call.evaluate(turn("agent", undetermined="asr_failed")))
    assert r["auth.only"].outcome == "not_applicable"  # the state alone decides
    assert r["first.turn"].outcome == "undetermined"
    assert r["first.turn"].evidence == "turn text unavailable (asr_failed)"
    assert r["early"].outcome == "undetermined"
    assert call.state.agent_turns == 1


def test_unreadable_customer_turn_marks_what_it_could_have_changed() -> None:
    p = pack(
        STATE_PACK + "  - id: escalate\n    kind: temporal\n    within_turns: 1\n"
        "    trigger: {kind: contains, phrases: [close my account]}\n"
        "    require: {kind: contains, phrases: [transfer]}\n"
    )
    call = PolicyEngine(p).start()
    turn = Turns()
    results = call.evaluate(turn("customer", undetermined="asr_overloaded"))
    assert {r.assertion_id: r.outcome for r in results} == {
        "billing.only": "undetermined",
        "escalate": "undetermined",
    }
    assert all(r.speaker == "customer" and r.turn_index == 0 for r in results)
    assert _by_id(results)["escalate"].evidence == (
        "customer turn 0 unavailable (asr_overloaded); it may have changed its trigger"
    )
    assert call.state.intent is None and call.state.pending == ()


def test_turns_must_arrive_in_order_and_not_after_finish() -> None:
    call = PolicyEngine(pack(TEXT_PACK)).start()
    turn = Turns()
    call.evaluate(turn("agent", "hello there"))
    first = turn("customer", "hi")
    call.evaluate(turn("customer", "again"))
    with pytest.raises(PolicyError, match="turn 1 arrived after turn 2"):
        call.evaluate(first)
    assert call.finish(10_000.0) == []
    with pytest.raises(PolicyError, match="finished"):
        call.evaluate(turn("agent", "late"))
    with pytest.raises(PolicyError, match="finished"):
        call.observe(ControlEvent("handoff", at_ms=11_000.0))


def test_scores_of_a_text_seen_before_are_remembered_not_recomputed() -> None:
    scorer = _scorer()
    engine = PolicyEngine(pack(CLASSIFIER_PACK), scorer)
    first, again = engine.start(), engine.start()
    turn = Turns()("agent", "I'm virtual. Want premium?")
    assert first.evaluate(turn) == again.evaluate(turn)
    assert scorer.calls == [("agent", 1)]


OFFER_PACK = """
assertions:
  - id: no.upsell
    kind: regex
    negate: true
    patterns: ['\\bswitch(ing)? to (the|our) (?P<subject>gold|premium)\\b']
    unless_customer_said: true
"""


def test_an_offer_of_what_the_customer_asked_about_is_an_answer_not_an_upsell() -> None:
    call = PolicyEngine(pack(OFFER_PACK)).start()
    turn = Turns()
    call.evaluate(turn("customer", "My bill is wrong this month."))
    unasked = _by_id(call.evaluate(turn("agent", "Fixed. Want to switch to our Premium plan?")))
    assert unasked["no.upsell"].outcome == "fail"
    call.evaluate(turn("customer", "Actually, how do I move to the gold account?"))
    asked = _by_id(call.evaluate(turn("agent", "Switching to the Gold account takes a minute.")))
    assert asked["no.upsell"].outcome == "pass"
    assert asked["no.upsell"].evidence == (
        'no match ("Switching to the Gold" excused by "the customer asked about "Gold"")'
    )
    # Another product than the one asked about is still an offer.
    other = _by_id(call.evaluate(turn("agent", "Or switch to our premium tier instead.")))
    assert other["no.upsell"].outcome == "fail"


def test_unless_customer_said_needs_a_subject_group() -> None:
    body = OFFER_PACK.replace("(?P<subject>gold|premium)", "(gold|premium)")
    with pytest.raises(PolicyError, match="subject"):
        pack(body)
