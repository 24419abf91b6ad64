"""Temporal assertions: "after a trigger turn, the agent must do X within N agent turns or S
seconds of stream time (a platform handoff counts as doing it)".

Turns are speaker turns (``policy.turns``): an agent turn is everything the agent says until
the customer takes the floor, so N counts the agent's replies, however the VAD cut them.
Each verdict lands on the turn that earned it and names the obligation (``trigger_turn``):

* an agent turn that meets it passes; one with a forbidden action, or one that began after the
  ``within_seconds`` deadline, fails at once;
* an agent turn that does not meet it but leaves turns in the window passes ("still open");
* the agent turn that uses up the window without meeting it fails (``undetermined`` when
  unreadable turns in the window might have met it) — after a *grace* for a platform handoff
  event: the verdict is held (:class:`~cxguard.policy.state.Exhausted`) until the stream
  passes the turn's end plus ``handoff_grace_ms`` (``Conversation.advance``); a handoff stamped
  by then meets it (``pass`` on that turn); the call ending releases it. With a zero grace, or
  when handoffs do not count, it is decided at once;
* the deadline passing before any agent turn met it (no agent turn starts in time any more)
  fails on the trigger turn; so does the call ending with the obligation open;
* a handoff stamped before the trigger turn began does not count; one after the deadline fails.

Pure functions from (assertion, open obligation, what happened) to a :class:`Decision`: the
verdict plus the obligation as it stands afterwards (``None`` once met, failed or given up).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from cxguard.model import Outcome, TurnText
from cxguard.policy.matchers import Hit, TurnView, match
from cxguard.policy.spec import TemporalAssertion
from cxguard.policy.state import Exhausted, Obligation


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    evidence: str
    obligation: Obligation | None
    scores: Mapping[str, float] = field(default_factory=dict)
    held: bool = False
    """The verdict waits for the handoff grace (``obligation.exhausted`` holds it)."""


def open_obligation(spec: TemporalAssertion, turn: TurnText, trigger: Hit) -> Obligation:
    deadline = None
    if spec.within_seconds is not None:
        deadline = turn.end_ms + 1000 * spec.within_seconds
    return Obligation(
        spec.id,
        turn.index,
        turn.speaker,
        turn.start_ms,
        turn.end_ms,
        deadline,
        spec.within_turns,
        evidence=f"trigger {trigger.evidence}",
        scores=dict(trigger.scores),
    )


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.1f} s"


def judge_agent_turn(
    spec: TemporalAssertion,
    obligation: Obligation | None,
    turn: TurnText,
    view: TurnView | None,
    unmet: str | None,
    grace_ms: float = 0.0,
    *,
    previewing: bool = False,
) -> Decision:
    """The verdict on one agent turn; ``view`` is None when its text is unavailable and
    ``unmet`` says which ``when`` condition fails (forbidden actions are then not checked).
    ``grace_ms``: how long a handoff after the turn that uses up the window still meets it.
    ``previewing``: the turn is still being spoken, so it does not use up the window yet."""
    forbid = None
    if spec.forbid is not None and unmet is None and view is not None:
        forbid = match(spec.forbid, view)
    responding = obligation is not None and turn.start_ms >= obligation.trigger_end_ms
    if obligation is None or not responding:
        return _outside_obligation(spec, obligation, turn, view, unmet, forbid)

    after = replace(obligation, turns_used=obligation.turns_used + 1)
    what = after.describe()
    last = (
        not previewing
        and after.turns_allowed is not None
        and after.turns_used >= after.turns_allowed
    )
    if forbid is not None and forbid.matched:
        scores = {**obligation.scores, **forbid.scores}
        return Decision(
            "fail", f"forbidden action {forbid.evidence} while {what} was open", None, scores
        )
    if obligation.deadline_ms is not None and turn.start_ms > obligation.deadline_ms:
        overdue = _seconds(turn.start_ms - obligation.deadline_ms)
        why = f"turn began at {_seconds(turn.start_ms)}, {overdue} after the deadline of {what}"
        return Decision("fail", why, None, obligation.scores)
    if view is None:
        after = replace(after, unknown_turns=after.unknown_turns + 1)
        why = f"turn text unavailable ({turn.undetermined_reason}); {what} may have been met"
        if last:
            return _exhaust(spec, after, turn, "undetermined", why, after.scores, grace_ms)
        return Decision("undetermined", why, after)
    required = match(spec.require, view)
    scores = {**obligation.scores, **required.scores}
    if required.matched:
        return Decision("pass", f"met {what}: {required.evidence}", None, scores)
    unsure = required.undetermined or (forbid.undetermined if forbid is not None else None)
    if unsure:
        after = replace(after, unknown_turns=after.unknown_turns + 1)
        if last:
            return _exhaust(
                spec, after, turn, "undetermined", f"{unsure}; {what}", scores, grace_ms
            )
        return Decision("undetermined", f"{unsure}; {what}", after, scores)
    if last:
        if after.unknown_turns:
            why = (
                f"{what} not met by the readable agent turns, but {after.unknown_turns} "
                "turn(s) in its window were unreadable"
            )
            return _exhaust(spec, after, turn, "undetermined", why, scores, grace_ms)
        why = f"{what} not met by agent turn {turn.index}: {required.evidence}"
        return _exhaust(spec, after, turn, "fail", why, scores, grace_ms)
    return Decision("pass", f"{what} still open; this turn: {required.evidence}", after, scores)


def _exhaust(
    spec: TemporalAssertion,
    after: Obligation,
    turn: TurnText,
    outcome: Outcome,
    why: str,
    scores: Mapping[str, float],
    grace_ms: float,
) -> Decision:
    """The window is used up: decide now, or hold the verdict for the handoff grace."""
    if grace_ms <= 0 or not spec.handoff_satisfies:
        return Decision(outcome, why, None, scores)
    held = Exhausted(turn.index, turn.start_ms, turn.end_ms, turn.end_ms + grace_ms, outcome, why)
    return Decision(outcome, why, replace(after, exhausted=held, scores=scores), scores, True)


def _outside_obligation(
    spec: TemporalAssertion,
    obligation: Obligation | None,
    turn: TurnText,
    view: TurnView | None,
    unmet: str | None,
    forbid: Hit | None,
) -> Decision:
    context = "no obligation open"
    if obligation is not None:
        context = f"turn began before trigger turn {obligation.trigger_turn} ended"
    if unmet is not None or spec.forbid is None:
        return Decision("not_applicable", unmet or context, obligation)
    if view is None:
        why = f"turn text unavailable ({turn.undetermined_reason}); forbidden action unchecked"
        return Decision("undetermined", why, obligation)
    assert forbid is not None
    if forbid.undetermined:
        return Decision("undetermined", forbid.undetermined, obligation, forbid.scores)
    if forbid.matched:
        why = f"forbidden action {forbid.evidence} ({context})"
        return Decision("fail", why, obligation, forbid.scores)
    why = f"{context}; forbidden action absent"
    return Decision("not_applicable", why, obligation, forbid.scores)


def release(obligation: Obligation, why: str) -> Decision:
    """The held verdict of an exhausted obligation stands (no handoff came in its grace)."""
    held = obligation.exhausted
    assert held is not None
    return Decision(held.outcome, f"{held.evidence}; {why}", None, obligation.scores)


def on_deadline(obligation: Obligation, agent_from_ms: float) -> Decision | None:
    """No agent turn that starts before ``agent_from_ms`` is still to come: an open obligation
    whose deadline lies before that can no longer be met (``None``: nothing decided)."""
    deadline = obligation.deadline_ms
    if obligation.exhausted is not None or deadline is None or agent_from_ms <= deadline:
        return None
    what = obligation.describe()
    if obligation.unknown_turns:
        why = (
            f"deadline of {what} passed; {obligation.unknown_turns} agent turn(s) in its "
            "window were unreadable"
        )
        return Decision("undetermined", why, None, obligation.scores)
    why = f"no agent turn met {what} before its deadline"
    return Decision("fail", why, None, obligation.scores)


def on_handoff(obligation: Obligation, at_ms: float) -> Decision | None:
    """A platform handoff stamped ``at_ms``; ``None`` when it does not concern the obligation
    (it came before the trigger turn began)."""
    if at_ms < obligation.trigger_start_ms:
        return None
    what, when = obligation.describe(), _seconds(at_ms)
    held = obligation.exhausted
    if held is not None:
        if at_ms > held.due_ms:
            return release(obligation, f"the handoff at {when} came after the grace")
        why = f"met {what} by a handoff at {when}, within the grace after turn {held.turn}"
        return Decision("pass", why, None, obligation.scores)
    if obligation.deadline_ms is not None and at_ms > obligation.deadline_ms:
        late = _seconds(at_ms - obligation.deadline_ms)
        why = f"handoff at {when} came {late} after the deadline of {what}"
        return Decision("fail", why, None, obligation.scores)
    return Decision("pass", f"met {what} by a handoff at {when}", None, obligation.scores)


def on_finish(obligation: Obligation, at_ms: float) -> Decision:
    what, when = obligation.describe(), _seconds(at_ms)
    if obligation.exhausted is not None:
        return release(obligation, f"the call ended at {when} before any handoff")
    if obligation.unknown_turns:
        why = (
            f"call ended at {when} with {what} open; "
            f"{obligation.unknown_turns} turn(s) in its window were unreadable"
        )
        return Decision("undetermined", why, None, obligation.scores)
    return Decision("fail", f"call ended at {when} with {what} unmet", None, obligation.scores)
