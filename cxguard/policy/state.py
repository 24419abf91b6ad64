"""Conversation state as immutable values, and the ``when`` conditions read from it.

The engine replaces the state after each turn or event instead of mutating it, so a
:class:`ConversationState` handed out is a stable snapshot (and two runs over the same input
produce equal states: determinism is easy to test).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cxguard.model import Outcome, Speaker
from cxguard.pii import TimedText
from cxguard.policy.spec import Range, When

CUSTOMER_TURNS_KEPT = 4


@dataclass(frozen=True)
class Exhausted:
    """The agent turn that used up an obligation's window without meeting it.

    Its verdict (``outcome``: ``fail``, or ``undetermined`` when unreadable turns in the window
    might have met it) stands unless a platform handoff is stamped by ``due_ms``, the turn's
    end plus the handoff grace; it is released then, or at the next event or call end."""

    turn: int
    start_ms: float
    end_ms: float
    due_ms: float
    outcome: Outcome
    evidence: str


@dataclass(frozen=True)
class Obligation:
    """An open temporal obligation: raised by a trigger turn, met by a later agent turn."""

    assertion_id: str
    trigger_turn: int
    trigger_speaker: Speaker
    trigger_start_ms: float
    trigger_end_ms: float
    deadline_ms: float | None
    """Stream time by which it must be met (``within_seconds`` after the trigger turn ended)."""
    turns_allowed: int | None
    """Agent (speaker) turns allowed to meet it."""
    turns_used: int = 0
    unknown_turns: int = 0
    """Agent turns in the window whose text was unavailable (they might have met it)."""
    evidence: str = ""
    scores: Mapping[str, float] = field(default_factory=dict)
    exhausted: Exhausted | None = None
    """Set once the window is used up: only a handoff within the grace can meet it now."""

    def describe(self) -> str:
        limits = []
        if self.turns_allowed is not None:
            limits.append(f"{self.turns_used}/{self.turns_allowed} agent turns used")
        if self.deadline_ms is not None:
            limits.append(f"deadline {self.deadline_ms / 1000:.1f} s")
        return f"obligation from turn {self.trigger_turn} ({self.evidence}; {', '.join(limits)})"


@dataclass(frozen=True)
class ConversationState:
    authenticated: bool = False
    auth_source: str = ""
    """What set ``authenticated`` ("call parameter", "event at 12.3 s", "agent turn 6")."""
    intent: str | None = None
    intent_source: str = ""
    turns: int = 0
    agent_turns: int = 0
    last_turn_index: int | None = None
    pending: tuple[Obligation, ...] = ()
    """Open obligations, at most one per assertion (``when.pending`` reads these)."""
    held: tuple[Obligation, ...] = ()
    """Obligations whose window is used up, their verdict held for the handoff grace. They do
    not stop the same trigger from opening a new obligation."""
    handoff_at_ms: float | None = None
    """Stream time of the latest platform handoff: it meets an obligation whose trigger turn
    began at or before it, even when that turn is judged after the event arrived."""
    finished: bool = False
    customer_said: tuple[str, ...] = ()
    """The customer's latest turns (at most ``CUSTOMER_TURNS_KEPT``), for matchers that tell
    an answer to the customer's own question from an unsolicited offer."""
    recent_digits: Mapping[Speaker, tuple[TimedText, ...]] = field(default_factory=dict)
    """pii: each speaker's recent digit-bearing texts (``pii.carry``), so the ``check``
    matcher fails on the turn that completes a number read across segments/turns."""

    def obligation(self, assertion_id: str) -> Obligation | None:
        return next((o for o in self.pending if o.assertion_id == assertion_id), None)


def _in_range(value: int, condition: int | Range) -> bool:
    if isinstance(condition, int):
        return value == condition
    low_ok = condition.min is None or value >= condition.min
    return low_ok and (condition.max is None or value <= condition.max)


def _show(condition: int | Range) -> str:
    if isinstance(condition, int):
        return str(condition)
    return f"{condition.min if condition.min is not None else ''}..{condition.max or ''}"


def unmet_condition(when: When, state: ConversationState, turn_index: int) -> str | None:
    """None when every condition of ``when`` holds for this turn, else which one does not.

    ``state.agent_turns`` already counts the turn being judged; ``when.speaker`` is the
    caller's business (it selects turns, it is not a state condition).
    """
    if when.authenticated is not None and state.authenticated != when.authenticated:
        source = f" ({state.auth_source})" if state.auth_source else ""
        return (
            f"applies when authenticated={str(when.authenticated).lower()}; the caller is "
            f"{'' if state.authenticated else 'not '}authenticated{source}"
        )
    if when.intent is not None and state.intent not in when.intent:
        return f"applies to intent {'/'.join(when.intent)}; intent is {state.intent or 'unknown'}"
    if state.intent is not None and state.intent in when.intent_not:
        return f"does not apply to intent {state.intent}"
    if when.agent_turn is not None and not _in_range(state.agent_turns, when.agent_turn):
        return (
            f"applies to agent turn {_show(when.agent_turn)}; this is agent turn "
            f"{state.agent_turns}"
        )
    if when.turn_index is not None and not _in_range(turn_index, when.turn_index):
        return f"applies to turn {_show(when.turn_index)}; this is turn {turn_index}"
    open_ids = [o.assertion_id for o in state.pending]
    if when.pending is not None and not set(when.pending) & set(open_ids):
        return f"applies while {'/'.join(when.pending)} is pending; it is not"
    if when.pending_any is not None and bool(open_ids) != when.pending_any:
        return (
            "applies while an obligation is pending"
            if when.pending_any
            else "applies while no obligation is pending"
        )
    return None
