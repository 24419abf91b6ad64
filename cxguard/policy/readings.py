"""Unsure readings: judging a turn whose text ASR refused on what its decodes heard.

A refused segment keeps the distinct texts its decodes produced (``cxguard.asr.agreement``);
a turn has them as ``TurnText.readings`` unless a number was heard in the turn or in any
reading (``policy.turns``: a card number read out may be whole in none of them). A verdict
that is the same under every reading does not depend on which one was said, so it is
recorded instead of ``undetermined`` (docs/TURNS.md, "Unsure readings"):

* :func:`agent_verdicts` — an agent turn, when every reading gets the same outcome from every
  assertion and leaves the same obligations open, and no number the agent began reading out
  is still open (``ConversationState.recent_digits``);
* :func:`customer_settled` — a customer turn, when no reading changes the conversation
  (intent, obligations, a trigger left unknown) from what the words heard for certain did.

Pure: the conversation passes in how it judges a text; nothing here keeps state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from cxguard import pii
from cxguard.model import TurnText
from cxguard.policy.state import ConversationState

if TYPE_CHECKING:
    from cxguard.policy.conversation import AssertionResult

MIN_READINGS = 2
"""One decode's words are not a reading of the turn: at least two must agree on a verdict."""

Judged = tuple[ConversationState, list["AssertionResult"]]
Read = tuple[ConversationState, Mapping[str, str], Sequence["AssertionResult"]]


def turn_readings(words: Sequence[str], at: int, heard: Sequence[str]) -> tuple[str, ...]:
    """The whole turn's text under each reading ``heard`` of its refused segment ``at``
    (``words``: each segment's text, the refused one's ignored); ``()`` when a number was
    heard in any of them — a card number read out may be whole in none (measured: an SSN and
    a card number read by an agent passed on their readings, benchmarks/README.md)."""
    if any(pii.holds_number(w) for w in (*words, *heard)):
        return ()
    return tuple(" ".join(w for w in (*words[:at], r, *words[at + 1 :]) if w) for r in heard)


def agent_verdicts(
    turn: TurnText, judge: Callable[[TurnText], Judged], *, number_open: bool
) -> Judged | None:
    """``turn``'s state and verdicts judged on its readings (``judge`` judges a readable turn,
    changing nothing), each verdict's evidence saying so; ``None`` when it has fewer than
    :data:`MIN_READINGS` readings, they differ anywhere, or ``number_open``: the agent's
    recent words hold digits a number read across turns may continue (the PII window)."""
    if turn.undetermined_reason is None or len(turn.readings) < MIN_READINGS or number_open:
        return None
    judged = [judge(replace(turn, text=t, undetermined_reason=None)) for t in turn.readings]
    first = _shape(*judged[0])
    if any(_shape(*j) != first for j in judged[1:]):
        return None
    st, results = judged[0]
    why = (
        f"the same on each of its {len(turn.readings)} unsure readings "
        f"(turn text unavailable: {turn.undetermined_reason})"
    )
    return st, [replace(r, evidence=f"{r.evidence}; {why}") for r in results]


def customer_settled(
    turn: TurnText, heard: ConversationState, read: Callable[[str], Read]
) -> str | None:
    """Why no reading of an unreadable customer turn changes anything the pack judges, or
    ``None``. ``heard`` is the state after the words heard for certain; ``read(text)`` reads
    ``text`` as the whole turn's words from the state before them. Readings never *open* an
    obligation: one that would keeps the verdicts it could change ``undetermined``."""
    if len(turn.readings) < MIN_READINGS:
        return None
    opened = {o.assertion_id for o in heard.pending}
    for text in turn.readings:
        st, unsure, met = read(text)
        if unsure or met or st.intent != heard.intent:
            return None
        if {o.assertion_id for o in st.pending} != opened:
            return None
    return (
        f"none of its {len(turn.readings)} unsure readings changes the caller intent or "
        "opens an obligation"
    )


def _shape(st: ConversationState, results: list[AssertionResult]) -> object:
    still_open = sorted(o.assertion_id for o in (*st.pending, *st.held))
    return [(r.assertion_id, r.outcome) for r in results], still_open, st.authenticated
