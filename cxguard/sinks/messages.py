"""What goes through the outbox: an alert or a handoff signal, serialised once, with a stable
id that every sink deduplicates on.

``alert_id`` is derived from what the alert is *about* (tenant, call, turn, assertions,
outcome), never from when it was raised or its wording: the same violation judged again
after a restart gets the same id, so a sink that saw it already drops the copy. One handoff
per call: its id is derived from (tenant, call id) alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from cxguard.model import Alert, HandoffRequest
from cxguard.sinks.serialization import to_json

MessageKind = Literal["alert", "handoff"]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()[:32]


def derive_alert_id(alert: Alert, *qualifiers: str) -> str:
    """The same alert raised again (a retry, a replay after a restart) gets the same id;
    different alerts about one turn differ by kind, outcome and ``qualifiers`` (the runtime
    passes e.g. ``"early"`` for a mid-turn alert, the stage of a pipeline error)."""
    v = alert.verdict
    covered = ",".join(sorted(alert.assertions or (v.assertion_id,)))
    return _digest(
        "cxguard-alert-v2",
        v.tenant,
        v.call_id,
        str(v.turn_index),
        covered,
        v.outcome,
        alert.kind,
        *qualifiers,
    )


def handoff_key(tenant: str, call_id: str) -> str:
    """The idempotency key of a call's one handoff (what receivers deduplicate on)."""
    return f"handoff-{_digest('cxguard-handoff-v1', tenant, call_id)}"


@dataclass(frozen=True)
class OutboxMessage:
    message_id: str
    kind: MessageKind
    tenant: str
    call_id: str
    severity: str
    body: str
    """The JSON of :func:`~cxguard.sinks.serialization.to_json` (alert or handoff)."""
    created_at: float
    attempts: int = 0
    row_id: int = 0

    def data(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


def alert_message(alert: Alert) -> OutboxMessage:
    alert_id = alert.alert_id or derive_alert_id(alert)
    v = alert.verdict
    return OutboxMessage(
        message_id=alert_id,
        kind="alert",
        tenant=v.tenant,
        call_id=v.call_id,
        severity=v.severity,
        body=to_json(dataclasses.replace(alert, alert_id=alert_id)),
        created_at=time.time(),
    )


def handoff_message(request: HandoffRequest, severity: str = "") -> OutboxMessage:
    return OutboxMessage(
        message_id=request.idempotency_key,
        kind="handoff",
        tenant=request.tenant,
        call_id=request.call_id,
        severity=severity,
        body=to_json(request),
        created_at=time.time(),
    )


def handoff_from(message: OutboxMessage) -> HandoffRequest:
    d = message.data()
    names = {f.name for f in dataclasses.fields(HandoffRequest)}
    return HandoffRequest(**{k: v for k, v in d.items() if k in names})
