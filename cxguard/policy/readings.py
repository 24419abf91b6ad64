"""Unsure readings: judging a turn whose text ASR refused on what its decodes heard.

A refused segment keeps the distinct texts its decodes produced (``TurnText.readings``, from
``cxguard.asr.agreement.readings``: none when a decode heard a number; nor has a turn whose
heard words hold one, ``policy.turns``). A verdict that is the same under every reading does
not depend on which one was said, so it is recorded instead of ``undetermined``
(docs/TURNS.md, "Unsure readings"):

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

from cxguard.model import TurnText
from cxguard.policy.state import ConversationState

if TYPE_CHECKING:
    from cxguard.policy.conversation import AssertionResult

MIN_READINGS = 2
"""One decode's words are not a reading of the turn: at least two must agree on a verdict."""

Judged = tuple[ConversationState, list["AssertionResult"]]
Read = tuple[ConversationState, Mapping[str, str], Sequence["AssertionResult"]]


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
