"""Where a call stands in the ledger: for a restart (re-judge what was left) and a reconnect
(continue the call's numbering rather than start again at turn 0).

:class:`CallProgress` gives the next speaker-turn and segment indices, and the call's
history in ledger order: stored turns (as :class:`~cxguard.model.TurnText`) interleaved with
the control events the policy observed, which the deterministic policy engine can replay to
rebuild the conversation state (intent, authentication, open obligations) before judging
the turns that were left. Texts are redacted, as stored: a replayed card number reads
``[CARD]``, which only PII assertions look at, and those judged that turn already.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from cxguard.evidence.schema import calls, events, turns
from cxguard.model import ControlEvent, SegmentSpan, TurnText

HistoryItem = TurnText | ControlEvent


@dataclass(frozen=True)
class CallProgress:
    tenant: str
    call_id: str
    next_turn: int = 0
    """The index the call's next speaker turn gets (one past the highest stored)."""
    next_segment: int = 0
    """The index the call's next VAD segment gets (one past the highest stored)."""
    history: tuple[HistoryItem, ...] = ()
    """Stored turns and control events, in the order the ledger recorded them."""
    parameters: dict[str, Any] = field(default_factory=dict)
    """The data of the call's first ``call_started`` (its custom parameters)."""
    source: str = ""
    state: str = ""
    stream_ended: tuple[float, str] | None = None
    """``(at_ms, reason)`` of the last ``stream_ended``: the platform had finished sending."""
    gap_turns: frozenset[int] = frozenset()
    """Turn indices already recorded as gaps (knowingly unjudged)."""

    @property
    def turns(self) -> tuple[TurnText, ...]:
        return tuple(h for h in self.history if isinstance(h, TurnText))


def _turn(r: Any) -> TurnText:
    spans = tuple(
        SegmentSpan(int(s["index"]), float(s["start_ms"]), float(s["end_ms"]))
        for s in (r.segments or [])
    )
    return TurnText(
        index=int(r.turn_index),
        speaker=r.speaker,
        text=r.text,
        start_ms=float(r.start_ms),
        end_ms=float(r.end_ms),
        undetermined_reason=r.undetermined_reason,
        confidence=r.confidence,
        segments=spans,
    )


def call_progress(conn: sa.Connection, tenant: str, call_id: str) -> CallProgress:
    key_t = (turns.c.tenant == tenant) & (turns.c.call_id == call_id)
    key_e = (events.c.tenant == tenant) & (events.c.call_id == call_id)
    key_c = (calls.c.tenant == tenant) & (calls.c.call_id == call_id)
    call = conn.execute(sa.select(calls.c.source, calls.c.state).where(key_c)).one_or_none()
    turn_rows = list(conn.execute(sa.select(turns).where(key_t).order_by(turns.c.seq)))
    event_rows = list(conn.execute(sa.select(events).where(key_e).order_by(events.c.seq)))
    items: list[tuple[int, HistoryItem]] = [(int(r.seq), _turn(r)) for r in turn_rows]
    parameters: dict[str, Any] = {}
    stream_ended: tuple[float, str] | None = None
    gap_turns: set[int] = set()
    started = False
    for r in event_rows:
        data = r.data if isinstance(r.data, dict) else {}
        if r.kind == "call_started" and not started:
            started, parameters = True, dict(data)
        elif r.kind == "stream_ended":
            stream_ended = (float(r.at_ms or 0.0), str(data.get("reason", "")))
        elif r.kind == "gap":
            gap_turns |= {int(t) for t in data.get("turns", []) if isinstance(t, int)}
        elif r.kind.startswith("control."):
            strings = {str(k): str(v) for k, v in data.items()}
            event = ControlEvent(r.kind.removeprefix("control."), float(r.at_ms or 0.0), strings)
            items.append((int(r.seq), event))
    items.sort(key=lambda item: item[0])
    stored = [t for _, t in items if isinstance(t, TurnText)]
    indices = [t.index for t in stored] + list(gap_turns)
    segments = [s.index for t in stored for s in t.segments]
    return CallProgress(
        tenant=tenant,
        call_id=call_id,
        next_turn=max(indices, default=-1) + 1,
        next_segment=max(segments, default=-1) + 1,
        history=tuple(h for _, h in items),
        parameters=parameters,
        source=call.source if call else "",
        state=call.state if call else "",
        stream_ended=stream_ended,
        gap_turns=frozenset(gap_turns),
    )


def unended_calls(conn: sa.Connection, owner: str) -> list[tuple[str, str]]:
    stmt = (
        sa.select(calls.c.tenant, calls.c.call_id)
        .where((calls.c.state == "live") & (calls.c.owner == owner))
        .order_by(calls.c.created_at)
    )
    return [(r.tenant, r.call_id) for r in conn.execute(stmt)]


def recent_calls(conn: sa.Connection, owner: str, since: float) -> list[tuple[str, str]]:
    stmt = (
        sa.select(calls.c.tenant, calls.c.call_id)
        .where((calls.c.owner == owner) & (calls.c.updated_at >= since))
        .order_by(calls.c.created_at)
    )
    return [(r.tenant, r.call_id) for r in conn.execute(stmt)]
