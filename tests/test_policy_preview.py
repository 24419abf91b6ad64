"""``Conversation.preview``: early fails for an agent turn still being spoken.

Checked here: the static rule (which assertions are previewable, for every kind), the default
pack's previewable set, monologues cut into pieces (card numbers, promises, closure), state
conditions read as for the whole turn, and — over every transcript and random monologues —
that previews change nothing and only foretell failures the whole turn really gets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_policy_support import KeywordScorer, pack

from cxguard.errors import PolicyError
from cxguard.model import ControlEvent, Speaker, TurnText
from cxguard.policy.engine import AssertionResult, Conversation, PolicyEngine
from cxguard.policy.offline import load_transcript
from cxguard.policy.pack import default_pack_path, load_pack
from cxguard.policy.preview import preview_exclusion, settled_text
from cxguard.policy.spec import AnyMatcher, AssertionSpec, ClassifierMatcher, TemporalAssertion

TRANSCRIPTS = sorted((Path(__file__).parent / "data" / "transcripts").glob("*.jsonl"))
CARD = "pii.no_full_card_number"
PROMISE = "commitments.no_unauthorized_promises"
CLOSURE = "billing.closure_escalation"
UNAUTH = "billing.no_payment_arrangements_unauthenticated"


def _default_engine() -> PolicyEngine:
    """The real deterministic billing pack: previews must equal the whole turn's results
    exactly, scores included, which classifier scores of a prefix need not (the semantic
    default pack is previewed end to end in test_e2e_midturn.py)."""
    return PolicyEngine(load_pack(default_pack_path().with_name("billing-rules.yaml")))


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return _default_engine()


def _reads_classifier(spec: AssertionSpec) -> bool:
    def walk(matcher: Any) -> bool:
        if isinstance(matcher, ClassifierMatcher):
            return True
        return isinstance(matcher, AnyMatcher) and any(walk(inner) for inner in matcher.any)

    if isinstance(spec, TemporalAssertion):
        return walk(spec.forbid) or walk(spec.require)
    return walk(spec)


def _exact(engine: PolicyEngine) -> set[str]:
    """Previewable ids whose prefix fail must reappear on the whole turn. Classifier scores
    may drop as text is added (documented in ``policy.preview``), so with a real scorer
    those assertions are left out of that check."""
    if engine.scorer is None:
        return set(engine.previewable)
    return {a.id for a in engine.preview_specs if not _reads_classifier(a)}


def _fails(results: list[AssertionResult]) -> dict[str, AssertionResult]:
    return {r.assertion_id: r for r in results if r.outcome == "fail"}


class Call:
    """A conversation plus a clock: whole turns, and monologues previewed piece by piece."""

    def __init__(self, engine: PolicyEngine, parameters: Mapping[str, str] | None = None):
        self.conversation = engine.start(parameters)
        self.index, self.at_ms = 0, 0.0

    def turn(self, speaker: Speaker, text: str, *, gap_ms: float = 500.0) -> TurnText:
        start = self.at_ms + gap_ms
        return TurnText(self.index, speaker, text, start, start + 300.0 * len(text.split()))

    def say(self, speaker: Speaker, text: str, **kw: float) -> list[AssertionResult]:
        turn = self.turn(speaker, text, **kw)
        self.index, self.at_ms = self.index + 1, turn.end_ms
        return self.conversation.evaluate(turn)

    def monologue(
        self, pieces: list[str], **kw: float
    ) -> tuple[list[list[AssertionResult]], list[AssertionResult]]:
        """Preview after each piece (the text so far), then evaluate the whole turn."""
        whole = self.turn("agent", " ".join(pieces), **kw)
        previews = [
            self.conversation.preview(replace(whole, text=" ".join(pieces[: k + 1])))
            for k in range(len(pieces))
        ]
        self.index, self.at_ms = self.index + 1, whole.end_ms
        return previews, self.conversation.evaluate(whole)


# --------------------------------------------------------------------------- the static rule

RULE_CASES = {
    "regex prohibition": ("{kind: regex, negate: true, patterns: [x]}", None),
    "regex requirement": ("{kind: regex, patterns: [x]}", "requires a match"),
    "contains prohibition": ("{kind: contains, negate: true, phrases: [x]}", None),
    "contains requirement": ("{kind: contains, phrases: [x]}", "requires a match"),
    "check prohibition": ("{kind: check, negate: true, checks: [card_number]}", None),
    "check requirement": ("{kind: check, checks: [ssn]}", "requires a match"),
    "classifier must be absent": ("{kind: classifier, negate: true, label: a.bad}", None),
    "classifier must be present": ("{kind: classifier, label: a.bad}", "requires a match"),
    "any prohibition": (
        "{kind: any, negate: true, any: [{kind: regex, patterns: [x]}, "
        "{kind: classifier, label: a.bad}]}",
        None,
    ),
    "any requirement": ("{kind: any, any: [{kind: regex, patterns: [x]}]}", "requires a match"),
    "customer prohibition": (
        "{kind: contains, negate: true, phrases: [x], when: {speaker: customer}}",
        "customer turns",
    ),
    "unauthenticated-only prohibition": (
        "{kind: regex, negate: true, patterns: [x], when: {authenticated: false}}",
        "confirm identity",
    ),
    "authenticated-only prohibition": (
        "{kind: regex, negate: true, patterns: [x], when: {authenticated: true}}",
        None,
    ),
    "prohibition on agent turn 1 while pending": (
        "{kind: regex, negate: true, patterns: [x], when: {agent_turn: 1, pending_any: true}}",
        None,
    ),
    "temporal with forbid": (
        "{kind: temporal, trigger: {kind: regex, patterns: [t]}, require: "
        "{kind: regex, patterns: [r]}, forbid: {kind: regex, patterns: [f]}, within_turns: 1}",
        None,
    ),
    "temporal with a deadline": (
        "{kind: temporal, trigger: {kind: regex, patterns: [t]}, require: "
        "{kind: classifier, label: a.bad}, within_seconds: 5}",
        None,
    ),
    "temporal require only": (
        "{kind: temporal, trigger: {kind: regex, patterns: [t]}, require: "
        "{kind: regex, patterns: [r]}, within_turns: 2}",
        "window closes",
    ),
    "temporal forbid, unauthenticated only": (
        "{kind: temporal, trigger: {kind: regex, patterns: [t]}, require: "
        "{kind: regex, patterns: [r]}, forbid: {kind: regex, patterns: [f]}, within_turns: 1, "
        "when: {authenticated: false}}",
        "confirm identity",
    ),
}
CONFIRMING = """
state:
  authenticate_on_agent_confirmation: true
  agent_confirmation: {kind: regex, patterns: [verified]}
"""


@pytest.mark.parametrize("case", sorted(RULE_CASES))
def test_static_rule_for_each_kind(case: str) -> None:
    body, why_not = RULE_CASES[case]
    p = pack(
        f"{CONFIRMING}classifier: {{thresholds: {{a.bad: 0.5}}}}\nassertions:\n  - id: a\n"
        f"    <<: {body}\n"
    )
    (spec,) = p.assertions
    exclusion = preview_exclusion(spec, p.state)
    if why_not is None:
        assert exclusion is None
    else:
        assert exclusion is not None and why_not in exclusion
    engine = PolicyEngine(p, missing_scorer="undetermined")
    assert engine.previewable == (frozenset({"a"}) if why_not is None else frozenset())


def test_unauthenticated_only_prohibitions_preview_when_the_agent_cannot_confirm() -> None:
    p = pack(
        "assertions:\n  - {id: a, kind: regex, negate: true, patterns: [x], "
        "when: {authenticated: false}}\n"
    )
    assert preview_exclusion(p.assertions[0], p.state) is None


def test_default_pack_previewable_assertions(engine: PolicyEngine) -> None:
    assert engine.previewable == {"billing.intent_scope", CARD, PROMISE, CLOSURE}
    reasons = {
        a.id: preview_exclusion(a, engine.pack.state)
        for a in engine.pack.assertions
        if a.id not in engine.previewable
    }
    assert set(reasons) == {"disclosure.ai_identifies", UNAUTH}
    assert "requires a match" in str(reasons["disclosure.ai_identifies"])
    assert "confirm identity" in str(reasons[UNAUTH])


def test_settled_text_ends_at_the_last_sentence_end() -> None:
    assert settled_text("I'll waive the fee") == ""
    assert settled_text("Sorry. I'll waive the fee") == "Sorry."
    assert settled_text('He said "no." Then? And then! more') == 'He said "no." Then? And then!'
    assert settled_text("It costs 4.50 dollars") == ""
    assert settled_text("Wait... ") == "Wait..."


# --------------------------------------------------------------------------- monologues


def test_card_number_is_alerted_when_its_sentence_ends(engine: PolicyEngine) -> None:
    call = Call(engine, {"authenticated": "true"})
    call.say("agent", "Hi, I'm a virtual assistant for Northwind billing.")
    call.say("customer", "Which card do you have on file?")
    previews, whole = call.monologue(
        [
            "Let me check that for you.",
            "The card on file is four one one one, one one one one,",
            "one one one one, one one one one.",
            "Is that still the right card?",
        ]
    )
    assert previews[:2] == [[], []]  # the number is not said (or not finished) yet
    assert [r.assertion_id for r in previews[2]] == [CARD]
    assert previews[3] == previews[2]
    assert "ending 1111" in previews[2][0].evidence
    assert previews[2][0] == _fails(whole)[CARD]  # the very result evaluate gives
    assert previews[2][0].actions == ("alert",) and previews[2][0].severity == "critical"


def test_promise_is_alerted_early_but_an_excuse_still_to_come_is_waited_for(
    engine: PolicyEngine,
) -> None:
    call = Call(engine)
    call.say("agent", "Hi, I'm a virtual assistant.")
    call.say("customer", "There's a late fee on my bill.")
    previews, whole = call.monologue(
        ["I'm sorry about that late fee.", "I'll waive the fee", "if your account is eligible."]
    )
    assert previews == [[], [], []]
    assert PROMISE not in _fails(whole)

    # Judged as a turn of its own, the unfinished sentence would have been a promise.
    alone = Call(engine)
    alone.say("agent", "Hi, I'm a virtual assistant.")
    assert PROMISE in _fails(
        alone.say("agent", "I'm sorry about that late fee. I'll waive the fee")
    )

    previews, whole = call.monologue(["I'll waive the fee.", "Anything else today?"])
    assert [[r.assertion_id for r in p] for p in previews] == [[PROMISE], [PROMISE]]
    assert previews[0][0] == _fails(whole)[PROMISE]


def test_required_phrases_are_left_to_evaluate(engine: PolicyEngine) -> None:
    call = Call(engine)
    previews, whole = call.monologue(
        ["Thanks for calling Northwind billing.", "I'm a virtual assistant, how can I help?"]
    )
    assert previews == [[], []]
    outcomes = {r.assertion_id: r.outcome for r in whole}
    assert outcomes["disclosure.ai_identifies"] == "pass"
    # The first piece alone fails it: a preview reporting it would have been wrong.
    first = Call(engine).say("agent", "Thanks for calling Northwind billing.")
    assert "disclosure.ai_identifies" in _fails(first)


def test_unauthenticated_rule_is_left_to_evaluate(engine: PolicyEngine) -> None:
    call = Call(engine, {"authenticated": "false"})
    call.say("agent", "Hi, I'm a virtual assistant.")
    pieces = ["We can set up a payment plan for you.", "I've verified your identity already."]
    previews, whole = call.monologue(pieces)
    assert previews == [[], []]
    assert {r.assertion_id: r.outcome for r in whole}[UNAUTH] == "not_applicable"
    assert call.conversation.state.authenticated
    alone = Call(engine, {"authenticated": "false"})
    alone.say("agent", "Hi, I'm a virtual assistant.")
    assert UNAUTH in _fails(alone.say("agent", pieces[0]))


def test_forbidden_closure_is_alerted_while_the_obligation_is_open(engine: PolicyEngine) -> None:
    call = Call(engine)
    call.say("agent", "Hi, I'm a virtual assistant.")
    call.say("customer", "I want to close my account.")
    opened = call.conversation.state
    previews, whole = call.monologue(["Okay.", "I'll close your account right now.", "It's done."])
    assert previews[0] == []
    closure = previews[1][0]
    assert [r.assertion_id for r in previews[1]] == [CLOSURE]
    assert closure.trigger_turn == 1 and closure.actions == ("alert", "handoff")
    assert "forbidden action" in closure.evidence
    assert closure == _fails(whole)[CLOSURE]
    assert opened.obligation(CLOSURE) is not None

    call.say("customer", "Actually, I want to cancel my service instead.")
    before = call.conversation.state
    previews, whole = call.monologue(["Let me transfer you to a specialist."])
    assert previews == [[]]  # met: a pass is not reported
    assert before.obligation(CLOSURE) is not None  # and the preview left it open
    assert {r.assertion_id: r.outcome for r in whole}[CLOSURE] == "pass"


DEADLINE = """
assertions:
  - id: escalate
    kind: temporal
    trigger: {kind: contains, phrases: [supervisor]}
    require: {kind: contains, phrases: [transfer]}
    within_seconds: 5
  - id: say.hello
    kind: contains
    phrases: [hello]
"""


def test_a_turn_begun_after_the_deadline_fails_at_its_first_sentence() -> None:
    call = Call(PolicyEngine(pack(DEADLINE)))
    call.say("customer", "Get me a supervisor.")
    previews, whole = call.monologue(["Hmm", "let me see.", "One moment."], gap_ms=9000.0)
    assert previews[0] == []  # nothing settled yet
    assert [r.assertion_id for r in previews[1]] == ["escalate"]
    assert "after the deadline" in previews[1][0].evidence
    assert previews[1][0] == _fails(whole)["escalate"]


CONDITIONS = """
state:
  authenticate_on_agent_confirmation: true
  agent_confirmation: {kind: contains, phrases: [you are verified]}
assertions:
  - {id: second.no.refund, kind: contains, negate: true, phrases: [refund],
     when: {agent_turn: 2}}
  - {id: authed.no.balance, kind: contains, negate: true, phrases: [balance],
     when: {authenticated: true}}
"""


def test_conditions_are_read_as_for_the_whole_turn() -> None:
    call = Call(PolicyEngine(pack(CONDITIONS)))
    previews, _ = call.monologue(["A refund.", "Your balance is ten."])
    assert previews == [[], []]  # agent turn 1; not authenticated
    previews, _ = call.monologue(["A refund.", "You are verified. Your balance is ten."])
    assert [[r.assertion_id for r in p] for p in previews] == [
        ["second.no.refund"],
        ["second.no.refund", "authed.no.balance"],  # the agent's confirmation counts
    ]
    call.conversation.observe(ControlEvent("unauthenticated", at_ms=call.at_ms))
    previews, _ = call.monologue(["Your balance is ten."])
    assert previews == [[]]  # agent turn 3, unauthenticated by the event
    call.conversation.observe(ControlEvent("authenticated", at_ms=call.at_ms))
    previews, _ = call.monologue(["Your balance is ten."])
    assert [r.assertion_id for r in previews[0]] == ["authed.no.balance"]


CLASSIFIED = """
classifier: {thresholds: {agent.commitment: 0.5, agent.disclosure: 0.5}}
assertions:
  - {id: no.commitment, kind: classifier, negate: true, label: agent.commitment}
  - {id: discloses, kind: classifier, label: agent.disclosure}
"""


def test_classifier_prohibitions_preview_and_requirements_do_not() -> None:
    scorer = KeywordScorer(
        {"agent": {"agent.commitment": ["guarantee"], "agent.disclosure": ["virtual"]}}
    )
    call = Call(PolicyEngine(pack(CLASSIFIED), scorer))
    previews, whole = call.monologue(["Hello.", "I guarantee a refund.", "Bye"])
    assert previews[0] == []
    assert [r.assertion_id for r in previews[1]] == ["no.commitment"]
    assert previews[1][0].scores == {"agent.commitment": 0.9}
    assert {r.assertion_id: r.outcome for r in whole} == {
        "no.commitment": "fail",
        "discloses": "fail",
    }
    # Three previews and one evaluate; the third preview's settled text is the second's, and
    # its scores are remembered.
    assert scorer.calls == [("agent", 1)] * 3

    unscored = Call(PolicyEngine(pack(CLASSIFIED), missing_scorer="undetermined"))
    previews, whole = unscored.monologue(["I guarantee a refund."])
    assert previews == [[]]  # undetermined is left to evaluate
    assert {r.outcome for r in whole} == {"undetermined"}


def test_customer_unreadable_and_unfinished_turns_preview_nothing(engine: PolicyEngine) -> None:
    call = Call(engine)
    assert (
        call.conversation.preview(call.turn("customer", "Close my account. 4111 1111 1111 1111."))
        == []
    )
    unreadable = replace(call.turn("agent", "I guarantee it."), undetermined_reason="asr_failed")
    assert call.conversation.preview(unreadable) == []
    assert call.conversation.preview(call.turn("agent", "I guarantee it")) == []
    assert call.conversation.preview(call.turn("agent", "")) == []


def test_preview_refuses_judged_turns_and_finished_calls(engine: PolicyEngine) -> None:
    call = Call(engine)
    call.say("agent", "Hi, I'm a virtual assistant.")
    with pytest.raises(PolicyError, match="index order"):
        call.conversation.preview(replace(call.turn("agent", "I guarantee it."), index=0))
    call.conversation.finish(at_ms=call.at_ms)
    with pytest.raises(PolicyError, match="finished"):
        call.conversation.preview(call.turn("agent", "I guarantee it."))


# --------------------------------------------------------------------------- purity, soundness


def _prefixes(text: str) -> Iterator[str]:
    """Every cut at a word boundary, as pieces joined so far."""
    words = text.split()
    for k in range(1, len(words) + 1):
        yield " ".join(words[:k])


def _preview_all(
    engine: PolicyEngine, conversation: Conversation, turn: TurnText
) -> dict[str, AssertionResult]:
    """Preview ``turn`` at every word boundary (once per distinct settled text: the same text
    gives the same answer, and the classifier costs a run per call); check each answer."""
    found: dict[str, AssertionResult] = {}
    seen: set[str] = set()
    for prefix in _prefixes(turn.text):
        if settled_text(prefix) in seen:
            continue
        seen.add(settled_text(prefix))
        for r in conversation.preview(replace(turn, text=prefix)):
            assert r.outcome == "fail" and r.assertion_id in engine.previewable
            assert (r.turn_index, r.speaker) == (turn.index, "agent")
            found.setdefault(r.assertion_id, r)
    return found


def _check_turn(
    engine: PolicyEngine, plain: Conversation, previewed: Conversation, turn: TurnText
) -> None:
    early = _preview_all(engine, previewed, turn) if turn.speaker == "agent" else {}
    if turn.speaker == "customer":
        assert previewed.preview(turn) == []
    whole = previewed.preview(turn)
    assert previewed.preview(turn) == whole  # repeatable
    results = plain.evaluate(turn)
    assert previewed.evaluate(turn) == results
    assert previewed.state == plain.state
    fails = _fails(results)
    assert set(early) & _exact(engine) <= set(fails)
    if settled_text(turn.text) == turn.text.strip() and turn.undetermined_reason is None:
        # The whole text previewed: exactly the previewable failures of evaluate, except an
        # obligation's window used up by this turn (more words might have met it).
        expected = [
            r
            for r in results
            if r.outcome == "fail"
            and r.assertion_id in engine.previewable
            and " not met by agent turn " not in r.evidence
        ]
        assert whole == (expected if turn.speaker == "agent" else [])


def _replay(engine: PolicyEngine, rows: list[dict[str, Any]]) -> int:
    """Run a transcript through two conversations, one previewing every agent turn at every
    word boundary first; they must agree on every result and state. Returns turns seen."""
    params = next((r["parameters"] for r in rows if "parameters" in r), {})
    plain, previewed = engine.start(params), engine.start(params)
    at_ms, index = 0.0, 0
    for row in rows:
        if "speaker" in row:
            text = row.get("text", "")
            start = 1000.0 * row["start"] if "start" in row else at_ms + 500.0
            end = 1000.0 * row["end"] if "end" in row else start + 350.0 * len(text.split())
            turn = TurnText(index, row["speaker"], text, start, end, row.get("undetermined"))
            _check_turn(engine, plain, previewed, turn)
            index, at_ms = index + 1, max(at_ms, end)
        elif "event" in row:
            data = {k: v for k, v in row.items() if k not in ("event", "at", "note")}
            event = ControlEvent(row["event"], 1000.0 * row.get("at", at_ms / 1000.0), data)
            assert previewed.observe(event) == plain.observe(event)
            at_ms = max(at_ms, event.at_ms)
    assert previewed.finish(at_ms) == plain.finish(at_ms)
    assert previewed.state == plain.state
    return index


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_previews_change_nothing_and_foretell_only_real_failures(
    engine: PolicyEngine, path: Path
) -> None:
    assert _replay(engine, load_transcript(path)) > 0


def test_transcripts_have_previewable_failures_to_foretell(engine: PolicyEngine) -> None:
    """The replay above is not vacuous: the transcripts fail every deterministic previewable
    assertion somewhere, and previews of those turns report them."""
    found: set[str] = set()
    for path in TRANSCRIPTS:
        rows = load_transcript(path)
        call = Call(engine, next((r["parameters"] for r in rows if "parameters" in r), None))
        for row in rows:
            if "speaker" not in row or "text" not in row:
                continue
            if row["speaker"] == "agent":
                found |= set(_fails(call.conversation.preview(call.turn("agent", row["text"]))))
            call.say(row["speaker"], row["text"])
    assert _exact(engine) <= found


FRAGMENTS = [
    "I'll waive the fee",
    "if your account is eligible",
    "I guarantee it",
    "I can't guarantee that",
    "your refund is approved",
    "once it's approved",
    "the card is 4111 1111 1111 1111",
    "four one one one",
    "one one one one",
    "two",
    "while I have you",
    "would you like our premium bundle",
    "that offer has ended",
    "let me transfer you to a specialist",
    "I'll close your account",
    "I can't close your account",
    "I've verified your identity",
    "we can set up a payment plan",
    "I need to verify you first",
    "thanks for calling",
    "I'm a virtual assistant",
    "your social is 123 45 6789",
]
SEPARATORS = [" ", ", ", ". ", "? ", "! "]
CONTEXTS: list[tuple[dict[str, str], list[tuple[Speaker, str]]]] = [
    ({}, []),
    ({"authenticated": "false"}, [("agent", "Hi, I'm a virtual assistant."), ("customer", "Hi.")]),
    ({"authenticated": "true"}, [("customer", "Please close my account.")]),
    ({}, [("agent", "Hello."), ("customer", "I want to cancel my service."), ("agent", "Ok.")]),
]


@settings(max_examples=120, deadline=None)
@given(
    context=st.sampled_from(CONTEXTS),
    parts=st.lists(
        st.tuples(st.sampled_from(FRAGMENTS), st.sampled_from(SEPARATORS)),
        min_size=1,
        max_size=6,
    ),
)
@example(  # a card-shaped 16 digits, a sentence end, four more: the run goes on past the "."
    context=({}, []),
    parts=[("four one one one", " ")] * 3 + [("one one one one", ". "), ("four one one one", " ")],
)
def test_random_monologues(
    context: tuple[dict[str, str], list[tuple[Speaker, str]]], parts: list[tuple[str, str]]
) -> None:
    engine = _ENGINE
    params, before = context
    plain, previewed = Call(engine, params), Call(engine, params)
    for speaker, text in before:
        assert plain.say(speaker, text) == previewed.say(speaker, text)
    text = "".join(fragment + sep for fragment, sep in parts).strip()
    _check_turn(engine, plain.conversation, previewed.conversation, plain.turn("agent", text))


_ENGINE = _default_engine()
