"""Temporal assertions: "after a trigger turn, the agent must do X within N agent responses
or S seconds of stream time (a platform handoff counts as doing it)".

An agent *response* is a run of agent turns with no customer turn between them: the VAD cuts
one spoken reply at a pause ("I understand. … Let me transfer you."), so a turn that does not
meet the obligation yet passes as "still open", and a window of N responses is judged when the
N-th response has ended — at the next customer turn (backchannels like "mm-hm" and unreadable
turns do not end it), a handoff, or the end of the call. A forbidden action, or an agent turn
starting after the ``within_seconds`` deadline, fails at once.

Pure functions from (assertion, open obligation, what happened) to a :class:`Decision`: the
verdict plus the obligation as it stands afterwards (``None`` once met, failed or given up).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from cxguard.model import Outcome, TurnText
from cxguard.policy.matchers import Hit, TurnView, match
from cxguard.policy.spec import TemporalAssertion
from cxguard.policy.state import Obligation

_BACKCHANNEL = frozenset(
    {"mm", "mhm", "mmhm", "mm-hm", "mm-hmm", "uh-huh", "uh", "huh", "um", "hmm", "ok", "okay"}
    | {"yeah", "yes", "yep", "right", "sure", "alright", "all"}
)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    evidence: str
    obligation: Obligation | None
    scores: Mapping[str, float] = field(default_factory=dict)


def is_backchannel(text: str) -> bool:
    """ "Mm-hm.", "Okay.", "Yeah, right." — listening noises that do not end the agent's turn."""
    words = re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower())
    return 0 < len(words) <= 3 and all(word in _BACKCHANNEL for word in words)


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
) -> Decision:
    """The verdict on one agent turn; ``view`` is None when its text is unavailable and
    ``unmet`` says which ``when`` condition fails (forbidden actions are then not checked)."""
    forbid = None
    if spec.forbid is not None and unmet is None and view is not None:
        forbid = match(spec.forbid, view)
    responding = obligation is not None and turn.start_ms >= obligation.trigger_end_ms
    if obligation is None or not responding:
        return _outside_obligation(spec, obligation, turn, view, unmet, forbid)

    late = obligation.deadline_ms is not None and turn.start_ms > obligation.deadline_ms
    used = obligation.turns_used + (not obligation.in_response)
    after = replace(obligation, turns_used=used, in_response=True)
    what = after.describe()
    if view is None:
        after = replace(after, unknown_turns=after.unknown_turns + 1)
        why = f"turn text unavailable ({turn.undetermined_reason}); {what} may have been met"
        return Decision("undetermined", why, None if late else after)
    if forbid is not None and forbid.matched:
        scores = {**obligation.scores, **forbid.scores}
        return Decision(
            "fail", f"forbidden action {forbid.evidence} while {what} was open", None, scores
        )
    if late:
        overdue = _seconds(turn.start_ms - (obligation.deadline_ms or 0.0))
        why = f"turn began at {_seconds(turn.start_ms)}, {overdue} after the deadline of {what}"
        return Decision("fail", why, None, obligation.scores)
    required = match(spec.require, view)
    scores = {**obligation.scores, **required.scores}
    if required.matched:
        return Decision("pass", f"met {what}: {required.evidence}", None, scores)
    unsure = required.undetermined or (forbid.undetermined if forbid is not None else None)
    if unsure:
        after = replace(after, unknown_turns=after.unknown_turns + 1)
        return Decision("undetermined", f"{unsure}; {what}", after, scores)
    return Decision("pass", f"{what} still open; this turn: {required.evidence}", after, scores)


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


def on_response_end(obligation: Obligation) -> Decision | None:
    """A customer turn ended the agent's response: the obligation stays open (``None``), or
    its window of responses is used up and it failed (or is undetermined)."""
    if not obligation.in_response:
        return None
    after = replace(obligation, in_response=False)
    if after.turns_allowed is None or after.turns_used < after.turns_allowed:
        return Decision("pass", f"{after.describe()} still open", after)
    what = after.describe()
    if after.unknown_turns:
        why = (
            f"{what} not met by the readable turns, but {after.unknown_turns} turn(s) "
            "in its window were unreadable"
        )
        return Decision("undetermined", why, None, after.scores)
    return Decision("fail", f"{what} not met by the agent's response", None, after.scores)


def on_handoff(obligation: Obligation, at_ms: float) -> Decision:
    if obligation.deadline_ms is not None and at_ms > obligation.deadline_ms:
        late = _seconds(at_ms - obligation.deadline_ms)
        why = f"handoff at {_seconds(at_ms)} came {late} after the deadline of "
        return Decision("fail", why + obligation.describe(), None, obligation.scores)
    why = f"met {obligation.describe()} by a handoff at {_seconds(at_ms)}"
    return Decision("pass", why, None, obligation.scores)


def on_finish(obligation: Obligation, at_ms: float) -> Decision:
    what = obligation.describe()
    if obligation.unknown_turns:
        why = (
            f"call ended at {_seconds(at_ms)} with {what} open; "
            f"{obligation.unknown_turns} turn(s) in its window were unreadable"
        )
        return Decision("undetermined", why, None, obligation.scores)
    why = f"call ended at {_seconds(at_ms)} with {what} unmet"
    return Decision("fail", why, None, obligation.scores)
