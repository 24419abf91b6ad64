"""Temporal assertions: obligations met or missed within N agent (speaker) turns or S seconds,
judged on the turn that earned the verdict."""

from __future__ import annotations

from test_policy_support import Turns, pack

from cxguard.model import ControlEvent
from cxguard.policy.engine import AssertionResult, Conversation, PolicyEngine

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


def test_the_agent_turn_that_uses_up_the_window_fails() -> None:
    call = _escalate().start()
    turn = Turns()
    call.evaluate(turn("customer", "close my account"))
    first = _one(call.evaluate(turn("agent", "why do you want to leave?")))
    assert first.outcome == "pass" and first.trigger_turn == 0
    assert "still open" in first.evidence and "1/2 agent turns used" in first.evidence
    assert call.evaluate(turn("customer", "just do it")) == []  # one agent turn left
    second = _one(call.evaluate(turn("agent", "are you sure?")))
    assert (second.outcome, second.actions, second.severity) == (
        "fail",
        ("alert", "handoff"),
        "critical",
    )
    assert (second.turn_index, second.speaker, second.trigger_turn) == (3, "agent", 0)
    assert second.evidence.startswith("obligation from turn 0 (trigger pattern 1 matched")
    assert "2/2 agent turns used, deadline 11.5 s) not met by agent turn 3" in second.evidence
    assert call.state.pending == ()
    assert call.evaluate(turn("customer", "yes I am sure")) == []


def _exhausted(grace_ms: float = 2000.0) -> tuple[Conversation, AssertionResult | None]:
    """A conversation whose only agent turn in the window (ends at 4.0 s) did not escalate."""
    call = _escalate(within_turns=1, within_seconds=None).start(handoff_grace_ms=grace_ms)
    turn = Turns()
    call.evaluate(turn("customer", "close my account", start_ms=0.0, length_ms=2000.0))
    results = call.evaluate(turn("agent", "let me see", start_ms=2500.0, length_ms=1500.0))
    return call, (results[0] if results else None)


def test_the_failing_verdict_waits_for_the_handoff_grace() -> None:
    call, now = _exhausted()
    assert now is None  # held: a platform handoff may still come
    assert call.state.pending == ()
    held = call.state.held[0].exhausted
    assert held is not None and (held.turn, held.due_ms) == (1, 6000.0)
    assert call.advance(5999.0) == [] and call.advance(6000.0) == []
    result = _one(call.advance(6000.5))
    assert (result.outcome, result.turn_index, result.speaker, result.trigger_turn) == (
        "fail",
        1,
        "agent",
        0,
    )
    assert result.evidence.endswith(
        "not met by agent turn 1: none of 1 pattern(s) matched; no handoff by 6.0 s"
    )
    assert call.state.held == ()


def test_a_handoff_within_the_grace_meets_it_on_that_turn() -> None:
    call, _ = _exhausted()
    met = _one(call.observe(ControlEvent("handoff", at_ms=5500.0)))
    assert (met.outcome, met.turn_index, met.trigger_turn) == ("pass", 1, 0)
    assert met.evidence.endswith("by a handoff at 5.5 s, within the grace after turn 1")

    call, _ = _exhausted()
    late = _one(call.observe(ControlEvent("handoff", at_ms=6500.0)))
    assert (late.outcome, late.turn_index) == ("fail", 1)
    assert late.evidence.endswith("the handoff at 6.5 s came after the grace")

    call, _ = _exhausted()
    ended = _one(call.finish(5000.0))
    assert (ended.outcome, ended.turn_index) == ("fail", 1)
    assert ended.evidence.endswith("the call ended at 5.0 s before any handoff")


def test_during_the_grace_later_turns_cannot_meet_it_and_a_new_trigger_opens_anew() -> None:
    call, _ = _exhausted()
    turn = Turns()
    turn.index, turn.at_ms = 2, 4000.0
    later = _one(call.evaluate(turn("agent", "ok I will transfer you", start_ms=4500.0)))
    assert later.outcome == "not_applicable"
    assert call.evaluate(turn("customer", "close my account, now")) == []
    assert [o.trigger_turn for o in call.state.pending] == [3]
    assert _one(call.advance(7000.0)).turn_index == 1  # the held verdict still stands
    again = _one(call.evaluate(turn("agent", "I will transfer you", start_ms=7500.0)))
    assert (again.outcome, again.trigger_turn) == ("pass", 3)


def test_without_a_grace_or_when_handoffs_do_not_count_it_is_decided_at_once() -> None:
    _, now = _exhausted(grace_ms=0.0)
    assert now is not None and (now.outcome, now.turn_index) == ("fail", 1)
    call = _escalate(within_seconds=None, handoff_satisfies="false").start(handoff_grace_ms=2000)
    turn = Turns()
    call.evaluate(turn("customer", "close my account"))
    call.evaluate(turn("agent", "hmm"))
    call.evaluate(turn("customer", "well?"))
    assert _one(call.evaluate(turn("agent", "hmm"))).outcome == "fail"


def test_a_handoff_before_the_trigger_does_not_meet_it() -> None:
    call = _escalate(within_turns=1, within_seconds=None).start()
    assert call.observe(ControlEvent("handoff", at_ms=1000.0)) == []
    turn = Turns()
    assert call.evaluate(turn("customer", "close my account", start_ms=2000.0)) == []
    assert len(call.state.pending) == 1
    assert call.observe(ControlEvent("handoff", at_ms=1500.0)) == []  # stamped before it
    assert _one(call.evaluate(turn("agent", "anything else?"))).outcome == "fail"


def test_a_handoff_stamped_during_the_trigger_turn_meets_it_when_that_turn_is_judged() -> None:
    # The event arrives while the customer is still speaking: the turn is judged after it.
    call = _escalate().start()
    assert call.observe(ControlEvent("handoff", at_ms=2500.0)) == []
    turn = Turns()
    met = _one(call.evaluate(turn("customer", "close my account", start_ms=2000.0)))
    assert (met.outcome, met.turn_index, met.speaker, met.trigger_turn) == (
        "pass",
        0,
        "customer",
        0,
    )
    assert met.evidence.endswith("by a handoff at 2.5 s") and call.state.pending == ()


def test_a_deadline_that_passes_with_no_agent_turn_fails_on_the_trigger_turn() -> None:
    call = _escalate(within_turns=None).start()
    turn = Turns()
    call.evaluate(turn("customer", "close my account", start_ms=0.0, length_ms=2000.0))
    # The stream is past the deadline (12 s), but an agent turn began at 11 s: it may meet it.
    assert call.advance(13_000.0, agent_from_ms=11_000.0) == []
    result = _one(call.advance(13_000.0, agent_from_ms=12_500.0))
    assert (result.outcome, result.turn_index, result.trigger_turn) == ("fail", 0, 0)
    assert result.evidence.startswith("no agent turn met obligation from turn 0")
    assert call.state.pending == ()


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
    result = _one(call.evaluate(turn("agent", "hmm")))
    assert (result.outcome, result.turn_index, result.trigger_turn) == ("fail", 3, 0)


def test_unreadable_turns_in_the_window_make_a_miss_undetermined() -> None:
    call = _escalate(within_turns=1).start()
    turn = Turns()
    call.evaluate(turn("customer", "close my account"))
    result = _one(call.evaluate(turn("agent", undetermined="asr_failed")))
    assert result.outcome == "undetermined" and "may have been met" in result.evidence
    assert result.turn_index == 1 and call.state.pending == ()

    call = _escalate().start()
    turn = Turns()
    call.evaluate(turn("customer", "close my account"))
    assert _one(call.evaluate(turn("agent", undetermined="asr_failed"))).outcome == "undetermined"
    assert call.evaluate(turn("customer", "hello?")) == []  # still open: 1/2 used
    ended = _one(call.evaluate(turn("agent", "hmm")))
    assert (ended.outcome, ended.turn_index) == ("undetermined", 3)
    assert "1 turn(s) in its window were unreadable" in ended.evidence
    assert call.state.pending == ()

    call = _escalate().start()
    turn = Turns()
    call.evaluate(turn("customer", "close my account"))
    call.evaluate(turn("agent", undetermined="asr_failed"))
    assert _one(call.finish(9000.0)).outcome == "undetermined"
