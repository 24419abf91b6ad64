"""Unsure readings (``cxguard.policy.readings``): a turn whose text ASR refused is judged on
what its decodes heard when every reading leads to the same verdicts, and stays
``undetermined`` when one differs.

The rules pack and the shipped pack (real ONNX heads) on segments as the live path hands them
to :class:`~cxguard.policy.calls.CallJudge`; readings as the transcriber keeps them
(``tests/test_asr_agreement.py`` has the real cascade producing them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from test_policy_support import Turns

from cxguard.model import Speaker, TurnText
from cxguard.policy.calls import CallJudge, Decided, Judged
from cxguard.policy.classifier import OnnxTextScorer
from cxguard.policy.conversation import AssertionResult
from cxguard.policy.engine import PolicyEngine
from cxguard.policy.pack import default_pack_path, load_pack
from cxguard.policy.readings import turn_readings
from cxguard.policy.turns import HeardSegment, TurnOptions

RULES = default_pack_path().with_name("billing-rules.yaml")
CLOSURE = "billing.closure_escalation"
PAYMENT = "billing.no_payment_arrangements_unauthenticated"
REFUSED = "ASR text rejected (low_logprob): average log-probability -1.60"


@pytest.fixture(scope="module")
def rules() -> PolicyEngine:
    return PolicyEngine(load_pack(RULES))


@pytest.fixture(scope="module")
def shipped() -> PolicyEngine:
    return PolicyEngine(load_pack(default_pack_path()), OnnxTextScorer())


class Call:
    """A call the agent has opened with a compliant greeting (turn 0)."""

    def __init__(self, engine: PolicyEngine) -> None:
        self.judge = CallJudge(engine, {"authenticated": "false"}, TurnOptions())
        self.out: list[object] = []
        self.n = 0
        self.at = 500.0
        self.say("agent", "Hello, I'm the virtual assistant for Northwind Bank.")

    def say(self, speaker: Speaker, text: str = "", readings: Sequence[str] = ()) -> None:
        start, end = self.at, self.at + 1500
        self.out += self.judge.tick(start, {speaker: start})
        reason = REFUSED if readings or not text else None
        seg = HeardSegment(self.n, speaker, start, end, text, reason, readings=tuple(readings))
        self.out += self.judge.segment(seg)
        self.n, self.at = self.n + 1, end + 1500

    def say_then_lose(self, speaker: Speaker, text: str, readings: Sequence[str]) -> None:
        """One turn of two segments: ``text`` heard, then one refused with ``readings``."""
        start = self.at
        self.out += self.judge.tick(start, {speaker: start})
        heard = HeardSegment(self.n, speaker, start, start + 1200, text)
        lost = HeardSegment(
            self.n + 1, speaker, start + 1500, start + 2500, "", REFUSED, readings=tuple(readings)
        )
        self.out += self.judge.segment(heard) + self.judge.segment(lost)
        self.n, self.at = self.n + 2, start + 4000

    def turn(self, index: int) -> TurnText:
        return next(o.turn for o in self.out if isinstance(o, Judged) and o.turn.index == index)

    def results(self, turn: int) -> dict[str, AssertionResult]:
        self.out += self.judge.tick(self.at + 10_000, {})
        found = {}
        for o in self.out:
            for r in o.results if isinstance(o, Judged | Decided) else ():
                if r.turn_index == turn:
                    found[r.assertion_id] = r
        return found


def test_an_unsure_customer_turn_no_reading_of_which_asks_for_closure_is_decided(
    shipped: PolicyEngine,
) -> None:
    call = Call(shipped)
    call.say("customer", readings=["Feel", "Feel.", "Cool."])  # "Cool." under every decode
    call.say("agent", "Great. Anything else I can help with?")
    closure = call.results(1)[CLOSURE]
    assert closure.outcome == "not_applicable"
    assert closure.speaker == "customer"
    assert "none of its 3 unsure readings" in closure.evidence
    assert REFUSED in closure.evidence  # the evidence still says the text was refused


def test_one_reading_that_asks_for_closure_keeps_the_trigger_undetermined(
    shipped: PolicyEngine,
) -> None:
    call = Call(shipped)
    call.say("customer", readings=["I want to clothe my cow", "I want to close my account"])
    call.say("agent", "Sure, which account is that?")
    closure = call.results(1)[CLOSURE]
    assert closure.outcome == "undetermined"
    assert closure.evidence.endswith("it may have changed its trigger")


def test_readings_that_all_ask_for_closure_do_not_open_an_obligation(
    rules: PolicyEngine,
) -> None:
    # Stricter than "the readings agree": a customer turn is decided only when no reading
    # changes anything; it never opens an obligation from words nobody heard for certain.
    call = Call(rules)
    call.say("customer", readings=["close my account", "please close my account"])
    call.say("agent", "Sure, which account is that?")
    assert call.results(1)[CLOSURE].outcome == "undetermined"
    assert call.results(2)[CLOSURE].outcome == "not_applicable"  # no obligation was opened


def test_without_two_readings_an_unreadable_customer_turn_stays_undetermined(
    rules: PolicyEngine,
) -> None:
    # No readings (a loop on digits leaves none), or one: one decode's words are no reading.
    for readings in ([], ["Feel"]):
        call = Call(rules)
        call.say("customer", readings=readings)
        call.say("agent", "Great. Anything else I can help with?")
        assert call.results(1)[CLOSURE].outcome == "undetermined", readings


def test_an_unsure_agent_turn_whose_readings_all_pass_passes_with_the_reason_kept(
    shipped: PolicyEngine,
) -> None:
    call = Call(shipped)
    call.say("customer", "What is my balance?")
    call.say("agent", readings=["I play", "Can I play?", "Have a nice day."])
    results = call.results(2)
    assert results, "the agent turn got no verdicts"
    assert {r.outcome for r in results.values()} <= {"pass", "not_applicable"}
    assert all("the same on each of its 3 unsure readings" in r.evidence for r in results.values())
    assert all(REFUSED in r.evidence for r in results.values())


def test_agent_readings_that_disagree_leave_the_turn_undetermined(rules: PolicyEngine) -> None:
    call = Call(rules)
    call.say("customer", "Can I pay my bill in parts?")
    call.say("agent", readings=["We can set up a payment plan.", "We can set a pay man."])
    assert call.results(2)[PAYMENT].outcome == "undetermined"


def test_agent_readings_that_all_break_a_rule_fail_it(rules: PolicyEngine) -> None:
    call = Call(rules)
    call.say("customer", "Can I pay my bill in parts?")
    call.say("agent", readings=["We can set up a payment plan.", "we can set up a payment plan"])
    payment = call.results(2)[PAYMENT]
    assert payment.outcome == "fail"
    assert "unsure readings" in payment.evidence


def test_a_partly_heard_turn_reads_the_heard_words_with_each_reading(rules: PolicyEngine) -> None:
    # Two segments of one agent turn: the second refused. The readings are whole-turn texts.
    call = Call(rules)
    call.say("customer", "Can I pay my bill in parts?")
    call.say_then_lose("agent", "Sure.", ["a", "b"])
    call.say("customer", "Okay thanks.")
    turn = call.turn(2)
    assert turn.readings == ("Sure. a", "Sure. b")
    assert turn.text == "Sure."


def test_readings_never_preview_an_early_alert(rules: PolicyEngine) -> None:
    # Early (mid-turn) alerts come from words heard for certain only; readings are weighed
    # once, when the whole turn is judged.
    conversation = rules.start({"authenticated": "false"})
    turn = replace(
        Turns()("agent", undetermined=REFUSED),
        readings=("We can set up a payment plan.", "we can set up a payment plan"),
    )
    assert conversation.preview(turn) == []
    assert {r.assertion_id: r.outcome for r in conversation.evaluate(turn)}[PAYMENT] == "fail"


def test_no_readings_beside_a_number_heard_in_the_turn(rules: PolicyEngine) -> None:
    # The refused segment may hold the rest of a card number the agent began reading out.
    call = Call(rules)
    call.say("customer", "What card do you have on file?")
    call.say_then_lose("agent", "It is 4111 1111", ["ok", "okay then"])
    call.say("customer", "Okay thanks.")
    turn = call.turn(2)
    assert turn.readings == ()
    assert call.results(2)["pii.no_full_card_number"].outcome == "undetermined"


def test_no_agent_readings_while_a_number_read_across_turns_is_open(
    rules: PolicyEngine,
) -> None:
    call = Call(rules)
    call.say("customer", "Which card is on file?")
    call.say("agent", "The card on file is 4111 1111")
    call.say("customer", "Uh huh.")
    call.say("agent", readings=["Thank you.", "Thank you very much."])
    assert call.results(4)["pii.no_full_card_number"].outcome == "undetermined"
    # The same readings with no number in the window decide the turn.
    other = Call(rules)
    other.say("customer", "Which card is on file?")
    other.say("agent", "The card on file is your Visa.")
    other.say("customer", "Uh huh.")
    other.say("agent", readings=["Thank you.", "Thank you very much."])
    assert other.results(4)["pii.no_full_card_number"].outcome == "pass"


@pytest.mark.parametrize(
    "heard",
    [
        # An SSN and a card number read by an agent came back like this, and passed.
        ("This is my F-M 849-56-S-3-1-189", "This is my F& 849-66-3,189.", "Thank you."),
        ("3.", "3,000,000,000", "3.1 million."),
        ("three point one million", "the point is"),
    ],
)
def test_readings_in_which_a_number_was_heard_are_not_used(heard: tuple[str, ...]) -> None:
    assert turn_readings([""], 0, heard) == ()


def test_turn_readings_put_each_reading_in_the_refused_segments_place() -> None:
    assert turn_readings(["Sure.", "", "Bye."], 1, ("ok", "okay then")) == (
        "Sure. ok Bye.",
        "Sure. okay then Bye.",
    )
