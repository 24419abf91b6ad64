"""Temporal assertions: obligations met or missed within N agent turns or S seconds."""

from __future__ import annotations

from test_policy_support import Turns, pack

from cxguard.model import ControlEvent
from cxguard.policy.engine import AssertionResult, PolicyEngine
from cxguard.policy.temporal import is_backchannel

ESCALATE = """
assertions:
  - id: escalate
    kind: temporal
    severity: critical
    on_fail: [alert, handoff]
    trigger: {kind: contains, phrases: [close my account]}
    require: {kind: contains, phrases: [transfer]}
    forbid: {kind: contains, phrases: [i closed your account]}
    within_turns: 2
    within_seconds: 10
    handoff_satisfies: true
"""


def _escalate(**changes: object) -> PolicyEngine:
    body = ESCALATE
    for key, value in changes.items():
        old = next(line for line in body.splitlines() if line.strip().startswith(f"{key}:"))
        body = body.replace(old, f"    {key}: {value}" if value is not None else "")
    return PolicyEngine(pack(body))


def _one(results: list[AssertionResult]) -> AssertionResult:
    assert len(results) == 1
    return results[0]


def test_met_on_the_next_agent_turn() -> None:
    call = _escalate().start()
    turn = Turns()
    assert _one(call.evaluate(turn("agent", "hi"))).outcome == "not_applicable"
    assert call.evaluate(turn("customer", "please close my account")) == []
    assert [o.trigger_turn for o in call.state.pending] == [1]
    result = _one(call.evaluate(turn("agent", "I will transfer you")))
    assert (result.outcome, result.trigger_turn, result.turn_index) == ("pass", 1, 2)
    assert result.evidence.startswith(
        'met obligation from turn 1 (trigger pattern 1 matched "close my account"'
    )
    assert call.state.pending == ()


def test_fails_when_the_window_of_responses_ends() -> None:
    call = _escalate().start()
    turn = Turns()
    call.evaluate(turn("customer", "close my account"))
    first = _one(call.evaluate(turn("agent", "why do you want to leave?")))
    assert first.outcome == "pass"
    assert "still open" in first.evidence and "1/2 agent responses used" in first.evidence
    assert call.evaluate(turn("customer", "just do it")) == []  # one response left
    second = _one(call.evaluate(turn("agent", "are you sure?")))
    assert second.outcome == "pass" and "2/2 agent responses used" in second.evidence
    result = _one(call.evaluate(turn("customer", "yes I am sure")))
    assert (result.outcome, result.actions, result.severity) == (
        "fail",
        ("alert", "handoff"),
        "critical",
    )
    assert (result.turn_index, result.speaker, result.trigger_turn) == (4, "customer", 0)
    assert result.evidence.endswith(
        "2/2 agent responses used, deadline 11.5 s) not met by the agent's response"
    )
    assert call.state.pending == ()


def test_a_response_cut_by_the_vad_or_a_backchannel_is_still_one_response() -> None:
    call = _escalate(within_turns=1).start()
    turn = Turns()
    call.evaluate(turn("customer", "close my account"))
    assert _one(call.evaluate(turn("agent", "I understand."))).outcome == "pass"
    assert call.evaluate(turn("customer", "Mm-hm.")) == []
    met = _one(call.evaluate(turn("agent", "Let me transfer you.")))
    assert met.outcome == "pass" and met.evidence.startswith("met obligation from turn 0")
    assert is_backchannel("Okay, yeah.") and is_backchannel("uh-huh")
    assert not is_backchannel("okay so what now") and not is_backchannel("")


def test_a_late_turn_fails_even_if_it_transfers() -> None:
    call = _escalate(within_turns=None).start()
    turn = Turns()
    call.evaluate(turn("customer", "close my account", start_ms=0.0, length_ms=2000.0))
    result = _one(call.evaluate(turn("agent", "let me transfer you", start_ms=12_500.0)))
    assert result.outcome == "fail"
    assert result.evidence.startswith("turn began at 12.5 s, 0.5 s after the deadline")


def test_seconds_window_met_in_time() -> None:
    call = _escalate(within_turns=None).start()
    turn = Turns()
    call.evaluate(turn("customer", "close my account", start_ms=0.0, length_ms=2000.0))
    assert _one(call.evaluate(turn("agent", "hmm", start_ms=3000.0))).outcome == "pass"
    assert _one(call.evaluate(turn("agent", "transfer", start_ms=11_900.0))).outcome == "pass"
    assert call.state.pending == ()


def test_forbidden_action_fails_with_or_without_an_obligation() -> None:
    call = _escalate().start()
    turn = Turns()
    alone = _one(call.evaluate(turn("agent", "I closed your account")))
    assert alone.outcome == "fail" and alone.evidence.endswith("(no obligation open)")
    call.evaluate(turn("customer", "close my account"))
    during = _one(call.evaluate(turn("agent", "OK, I closed your account, transfer done")))
    assert during.outcome == "fail" and "while obligation from turn 1" in during.evidence


def test_a_handoff_event_meets_the_obligation() -> None:
    call = _escalate().start()
    turn = Turns()
    call.evaluate(turn("customer", "close my account", start_ms=0.0, length_ms=2000.0))
    result = _one(call.observe(ControlEvent("handoff", at_ms=4000.0)))
    assert (result.outcome, result.turn_index, result.speaker) == ("pass", 0, "customer")
    assert result.evidence.endswith("by a handoff at 4.0 s")
    assert call.state.pending == () and call.state.handoff_at_ms == 4000.0
    assert _one(call.evaluate(turn("agent", "bye"))).outcome == "not_applicable"


def test_a_late_handoff_fails_and_handoff_can_be_disallowed() -> None:
    call = _escalate().start()
    call.evaluate(Turns()("customer", "close my account", start_ms=0.0, length_ms=2000.0))
    late = _one(call.observe(ControlEvent("handoff", at_ms=13_000.0)))
    assert late.outcome == "fail" and "came 1.0 s after the deadline" in late.evidence

    call = _escalate(handoff_satisfies="false").start()
    call.evaluate(Turns()("customer", "close my account"))
    assert call.observe(ControlEvent("handoff", at_ms=2000.0)) == []
    assert len(call.state.pending) == 1


def test_pending_at_call_end_fails_attributed_to_the_trigger() -> None:
    call = _escalate().start()
    turn = Turns()
    call.evaluate(turn("agent", "hello"))
    call.evaluate(turn("customer", "close my account"))
    result = _one(call.finish(at_ms=5000.0))
    assert (result.outcome, result.turn_index, result.trigger_turn) == ("fail", 1, 1)
    assert result.evidence.startswith("call ended at 5.0 s with obligation from turn 1")
    assert call.state.finished and call.state.pending == ()


def test_an_agent_turn_that_began_before_the_trigger_ended_does_not_count() -> None:
    call = _escalate(within_turns=1).start()
    turn = Turns()
    call.evaluate(turn("customer", "close my account", start_ms=0.0, length_ms=3000.0))
    barge_in = _one(call.evaluate(turn("agent", "sorry go on", start_ms=2000.0)))
    assert barge_in.outcome == "not_applicable"
    assert barge_in.evidence.startswith("turn began before trigger turn 0 ended")
    assert _one(call.evaluate(turn("agent", "transfer", start_ms=4000.0))).outcome == "pass"


def test_a_repeated_trigger_does_not_reset_the_window() -> None:
    call = _escalate().start()
    turn = Turns()
    call.evaluate(turn("customer", "close my account"))
    call.evaluate(turn("agent", "why?"))
    assert call.evaluate(turn("customer", "close my account now")) == []
    assert [o.trigger_turn for o in call.state.pending] == [0]
    call.evaluate(turn("agent", "hmm"))
    assert _one(call.evaluate(turn("customer", "hello?"))).outcome == "fail"


def test_unreadable_turns_in_the_window_make_a_miss_undetermined() -> None:
    call = _escalate(within_turns=1).start()
    turn = Turns()
    call.evaluate(turn("customer", "close my account"))
    result = _one(call.evaluate(turn("agent", undetermined="asr_failed")))
    assert result.outcome == "undetermined" and "may have been met" in result.evidence
    assert call.evaluate(turn("customer", undetermined="asr_failed")) == []  # still open
    ended = _one(call.evaluate(turn("customer", "hello?")))
    assert ended.outcome == "undetermined"
    assert "1 turn(s) in its window were unreadable" in ended.evidence
    assert call.state.pending == ()

    call = _escalate().start()
    turn = Turns()
    call.evaluate(turn("customer", "close my account"))
    call.evaluate(turn("agent", undetermined="asr_failed"))
    assert _one(call.finish(9000.0)).outcome == "undetermined"
