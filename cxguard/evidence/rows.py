"""What the ledger writes: checked, redacted, normalised rows (before they are chained), and
the :class:`LedgerOp` that carries them through the spool.

Everything that may carry speech goes through :func:`clean` (redaction); numbers are made
plain finite floats and JSON columns plain JSON types, so the canonical form hashed at write
time is the one recomputed from what the database returns. Ops are built (and so checked and
redacted) *before* they are spooled: the spool file never holds a card number either, and an
op that was spooled can always be stored.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from cxguard.errors import EvidenceError
from cxguard.evidence.chain import jsonable, valid_text
from cxguard.evidence.schema import calls
from cxguard.model import OUTCOMES, SPEAKERS, SegmentSpan, TurnText, Verdict
from cxguard.pii import redact, redact_data

_KIND_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")

LIFECYCLE = {"call_started": "live", "call_ended": "ended", "call_interrupted": "interrupted"}
"""Events that move a call's state, and the state they move it to."""


def clean(text: str) -> str:
    # Redaction runs on what is actually stored: valid UTF-8, no NUL (PostgreSQL refuses it).
    return redact(valid_text(text))


def _name(what: str, value: str, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > limit or (not value and not empty):
        raise EvidenceError(f"invalid {what} {value!r}"[:200])
    if valid_text(value) != value:
        raise EvidenceError(f"invalid {what}: not valid text")
    return value


def _finite(what: str, value: float) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise EvidenceError(f"{what} must be a finite number, not {value!r}")
    return number


def check_ids(call_id: str, tenant: str) -> None:
    _name("call id", call_id, 128)
    _name("tenant", tenant, 64)


def _speaker(speaker: str) -> str:
    if speaker not in SPEAKERS:
        raise EvidenceError(f"unknown speaker {speaker!r}")
    return speaker


def _spans(spans: Sequence[SegmentSpan]) -> list[dict[str, Any]]:
    return [
        {
            "index": int(s.index),
            "start_ms": _finite("segment start_ms", s.start_ms),
            "end_ms": _finite("segment end_ms", s.end_ms),
        }
        for s in spans
    ]


def turn_values(
    call_id: str, tenant: str, turn: TurnText, model_ids: Mapping[str, str] | None
) -> dict[str, Any]:
    check_ids(call_id, tenant)
    reason = turn.undetermined_reason
    return {
        "tenant": tenant,
        "call_id": call_id,
        "turn_index": int(turn.index),
        "speaker": _speaker(turn.speaker),
        "start_ms": _finite("start_ms", turn.start_ms),
        "end_ms": _finite("end_ms", turn.end_ms),
        "text": clean(turn.text),
        "undetermined_reason": None if reason is None else clean(reason),
        "confidence": jsonable(None if turn.confidence is None else float(turn.confidence)),
        "model_ids": jsonable(dict(model_ids or {})),
        "segments": _spans(turn.segments),
    }


def verdict_values(v: Verdict, now: float) -> dict[str, Any]:
    """A verdict whose ``decided_at_wall`` is 0 (unset) is stamped ``now``."""
    check_ids(v.call_id, v.tenant)
    if v.outcome not in OUTCOMES:
        raise EvidenceError(f"unknown outcome {v.outcome!r}")
    return {
        "tenant": v.tenant,
        "call_id": v.call_id,
        "turn_index": int(v.turn_index),
        "speaker": _speaker(v.speaker),
        "start_ms": _finite("start_ms", v.start_ms),
        "end_ms": _finite("end_ms", v.end_ms),
        "text": clean(v.text),
        "assertion_id": _name("assertion id", v.assertion_id, 128),
        "outcome": v.outcome,
        "evidence": clean(v.evidence),
        "severity": _name("severity", v.severity, 32, empty=True),
        "actions": jsonable(list(v.actions)),
        "scores": jsonable(dict(v.scores)),
        "policy_hash": _name("policy hash", v.policy_hash, 128, empty=True),
        "model_ids": jsonable(dict(v.model_ids)),
        "latency": jsonable(dict(v.latency_ms)),
        "decided_at": _finite("decided_at_wall", v.decided_at_wall) or now,
        "trigger_turn": None if v.trigger_turn is None else int(v.trigger_turn),
        "segments": _spans(v.segments),
        "release_id": _name("release id", v.release_id, 32, empty=True),
        "agent_version": _name("agent version", clean(v.agent_version), 128, empty=True),
        "intent": _name("intent", clean(v.intent), 128, empty=True),
        "mode": _mode(v.mode),
    }


def _mode(mode: str) -> str:
    if mode not in ("live", "shadow"):
        raise EvidenceError(f"unknown assertion mode {mode!r}")
    return mode


def _kind(kind: str) -> str:
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        raise EvidenceError(f"invalid event kind {kind!r}"[:200])
    return kind


def event_values(
    call_id: str, tenant: str, kind: str, at_ms: float | None, data: Mapping[str, Any] | None
) -> dict[str, Any]:
    check_ids(call_id, tenant)
    return {
        "tenant": tenant,
        "call_id": call_id,
        "kind": _kind(kind),
        "at_ms": None if at_ms is None else _finite("at_ms", at_ms),
        # Strings redacted, and the caller's number (``participant.ani`` …) masked whole.
        "data": redact_data(jsonable(dict(data or {}), valid_text)),
    }


def finding_values(tenant: str, kind: str, data: Mapping[str, Any] | None) -> dict[str, Any]:
    _name("tenant", tenant, 64)
    data_ = redact_data(jsonable(dict(data or {}), valid_text))
    return {"tenant": tenant, "kind": _kind(kind), "data": data_}


OpTable = Literal["turns", "verdicts", "events", "findings"]


@dataclass(frozen=True)
class LedgerOp:
    """One write of the ledger, ready to store: rows of one table, for one call (or, for
    ``findings``, one tenant; ``call_id`` is then ""). ``op_id`` makes it idempotent: an op
    replayed from the spool after a crash is stored once."""

    op_id: str
    table: OpTable
    tenant: str
    call_id: str
    rows: tuple[dict[str, Any], ...]
    owner: str = ""
    """The sidecar instance writing (recorded on the call when a ``call_started`` starts it)."""
    source: str = ""
    """The call's source (``twilio``, ``audiohook``, ...), recorded with ``call_started``."""

    def to_record(self) -> dict[str, Any]:
        return {
            "op_id": self.op_id,
            "table": self.table,
            "tenant": self.tenant,
            "call_id": self.call_id,
            "rows": list(self.rows),
            "owner": self.owner,
            "source": self.source,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> LedgerOp:
        return cls(
            op_id=str(record["op_id"]),
            table=record["table"],
            tenant=str(record["tenant"]),
            call_id=str(record["call_id"]),
            rows=tuple(dict(r) for r in record["rows"]),
            owner=str(record.get("owner", "")),
            source=str(record.get("source", "")),
        )


def new_op_id() -> str:
    return uuid.uuid4().hex


def turn_op(
    call_id: str,
    tenant: str,
    turn: TurnText,
    model_ids: Mapping[str, str] | None = None,
    *,
    op_id: str | None = None,
) -> LedgerOp:
    row = turn_values(call_id, tenant, turn, model_ids)
    return LedgerOp(op_id or new_op_id(), "turns", tenant, call_id, (row,))


def verdict_ops(batch: Sequence[Verdict], now: float) -> list[LedgerOp]:
    """One op per call of ``batch`` (in order of first appearance), rows in the given order."""
    by_call: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for v in batch:
        row = verdict_values(v, now)
        by_call.setdefault((row["tenant"], row["call_id"]), []).append(row)
    return [
        LedgerOp(new_op_id(), "verdicts", tenant, call_id, tuple(rows))
        for (tenant, call_id), rows in by_call.items()
    ]


def event_op(
    call_id: str,
    tenant: str,
    kind: str,
    at_ms: float | None,
    data: Mapping[str, Any] | None,
    *,
    owner: str = "",
    source: str = "",
) -> LedgerOp:
    row = event_values(call_id, tenant, kind, at_ms, data)
    return LedgerOp(new_op_id(), "events", tenant, call_id, (row,), owner, source[:32])


def finding_op(
    tenant: str, kind: str, data: Mapping[str, Any] | None, *, op_id: str | None = None
) -> LedgerOp:
    row = finding_values(tenant, kind, data)
    return LedgerOp(op_id or new_op_id(), "findings", tenant, "", (row,))


def stable_op_id(*parts: str) -> str:
    """An op id derived from what the write is about: the same finding (a release seen, a
    drift finding) recorded twice, by two processes or two runs, is stored once."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:64]


def update_call(conn: sa.Connection, event: Mapping[str, Any], op: LedgerOp, now: float) -> None:
    """Keep the (unchained, derived) ``calls`` summary in step with lifecycle events."""
    kind, data = event["kind"], event["data"]
    state = LIFECYCLE.get(kind)
    if state is None:
        return
    values: dict[str, Any] = {"state": state, "updated_at": now}
    if kind == "call_started":
        values |= {"started_at_ms": event["at_ms"], "ended_at_ms": None, "end_reason": None}
        if op.owner:
            values["owner"] = op.owner
        source = op.source or data.get("source")
        if isinstance(source, str) and source:
            values["source"] = source[:32]
    else:
        reason = data.get("reason")
        values |= {
            "ended_at_ms": event["at_ms"],
            "end_reason": reason[:128] if isinstance(reason, str) else None,
        }
    key = (calls.c.tenant == event["tenant"]) & (calls.c.call_id == event["call_id"])
    conn.execute(sa.update(calls).where(key).values(**values))


CONSOLE_ACTION_KINDS = ("console.acknowledge", "console.assign", "console.comment")
"""A supervisor's response to an alert on ``/console``: chained events on the alert's call
(``runtime/console/hub.py`` writes them through the spool); the governance trail lists them
with the notes."""
NOTE_KINDS = ("note", "ack")
"""Remediation notes and acknowledgements: chained events on a call, or chained findings on
the tenant (about a drift finding), written by :meth:`EvidenceLedger.annotate`."""


def note_data(
    kind: str, text: str, by: str, about: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    if kind not in NOTE_KINDS:
        raise EvidenceError(f"a note's kind is one of {', '.join(NOTE_KINDS)}, not {kind!r}")
    if not isinstance(text, str) or not text.strip():
        raise EvidenceError("a note needs a text")
    _name("author", by, 128)
    return {**dict(about or {}), "text": text.strip(), "by": by}
