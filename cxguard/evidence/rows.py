"""What the ledger writes: checked, redacted, normalised rows (before they are chained).

Everything that may carry speech goes through :func:`clean` (redaction); numbers are made
plain finite floats and JSON columns plain JSON types, so the canonical form hashed at write
time is the one recomputed from what the database returns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from cxguard.errors import EvidenceError
from cxguard.evidence.chain import jsonable
from cxguard.evidence.schema import calls
from cxguard.model import OUTCOMES, SPEAKERS, TurnText, Verdict
from cxguard.pii import redact, redact_data

_KIND_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")


def clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; redaction runs on what is actually stored.
    return redact(text.replace("\x00", ""))


def _without_nul(text: str) -> str:
    return text.replace("\x00", "")


def _name(what: str, value: str, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > limit or (not value and not empty):
        raise EvidenceError(f"invalid {what} {value!r}")
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


def turn_values(
    call_id: str, tenant: str, turn: TurnText, model_ids: Mapping[str, str] | None
) -> dict[str, Any]:
    check_ids(call_id, tenant)
    reason = turn.undetermined_reason
    return {
        "call_id": call_id,
        "tenant": tenant,
        "turn_index": int(turn.index),
        "speaker": _speaker(turn.speaker),
        "start_ms": _finite("start_ms", turn.start_ms),
        "end_ms": _finite("end_ms", turn.end_ms),
        "text": clean(turn.text),
        "undetermined_reason": None if reason is None else clean(reason),
        "confidence": jsonable(None if turn.confidence is None else float(turn.confidence)),
        "model_ids": jsonable(dict(model_ids or {})),
    }


def verdict_values(v: Verdict, now: float) -> dict[str, Any]:
    """A verdict whose ``decided_at_wall`` is 0 (unset) is stamped ``now``."""
    check_ids(v.call_id, v.tenant)
    if v.outcome not in OUTCOMES:
        raise EvidenceError(f"unknown outcome {v.outcome!r}")
    return {
        "call_id": v.call_id,
        "tenant": v.tenant,
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
    }


def event_values(
    call_id: str, tenant: str, kind: str, at_ms: float | None, data: Mapping[str, Any] | None
) -> dict[str, Any]:
    check_ids(call_id, tenant)
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        raise EvidenceError(f"invalid event kind {kind!r}")
    return {
        "call_id": call_id,
        "tenant": tenant,
        "kind": kind,
        "at_ms": None if at_ms is None else _finite("at_ms", at_ms),
        # NUL first (it could split a number), then strings redacted and the caller's
        # phone number (participant.ani) masked whole.
        "data": redact_data(jsonable(dict(data or {}), _without_nul)),
    }


def update_call(conn: sa.Connection, event: Mapping[str, Any]) -> None:
    """Keep the (unchained, derived) ``calls`` summary in step with start/end events."""
    data = event["data"]
    if event["kind"] == "call_started":
        values: dict[str, Any] = {"started_at_ms": event["at_ms"]}
        if isinstance(data.get("source"), str):
            values["source"] = data["source"][:32]
    elif event["kind"] == "call_ended":
        reason = data.get("reason")
        values = {
            "ended_at_ms": event["at_ms"],
            "end_reason": reason[:128] if isinstance(reason, str) else None,
        }
    else:
        return
    conn.execute(sa.update(calls).where(calls.c.call_id == event["call_id"]).values(**values))
