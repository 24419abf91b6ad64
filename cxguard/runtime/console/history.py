"""What a console shows on load, from the ledger: the tenant's recent calls (their turns,
controls, handoffs and the supervisors' actions), and per-assertion outcome rates. Reading
is synchronous (the hub runs it in a thread); folding into the view is sans I/O."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.runtime.console.state import TenantView

log = logging.getLogger(__name__)

HISTORY_CALLS = 20
Rows = list[dict[str, Any]]


def read(ledger: EvidenceLedger, tenant: str) -> tuple[Rows, Rows, Rows]:
    """``(calls, turns, events)`` of the tenant's last :data:`HISTORY_CALLS` calls."""
    calls = ledger.calls(tenant)[-HISTORY_CALLS:]
    turns: Rows = []
    events: Rows = []
    for c in calls:
        turns += ledger.turns(c["call_id"], tenant)
        events += ledger.events(c["call_id"], tenant)
    return calls, turns, events


def fold(view: TenantView, calls: Sequence[dict[str, Any]], turns: Rows, events: Rows) -> None:
    """Calls the view knows already (live since this process started) are left as they are;
    supervisors' actions are added whatever the call (they are deduplicated by id)."""
    known = set(view.calls)
    for c in calls:
        if c["call_id"] in known:
            continue
        started = float(c.get("created_at") or 0.0)
        view.on_call_started(c["call_id"], str(c.get("source") or ""), started, {})
        if c.get("state") != "live":
            ended = float(c.get("updated_at") or started)
            view.on_call_ended(c["call_id"], ended, c.get("end_reason"))
    for t in turns:
        if t["call_id"] in known:
            continue
        view.on_turn(
            t["call_id"],
            {"index": t["turn"], "speaker": t["speaker"], "text": t["text"],
             "start_ms": 1000 * float(t["start"]), "end_ms": 1000 * float(t["end"]),
             "undetermined_reason": t["undetermined_reason"], "outcomes": {}},
        )  # fmt: skip
    for e in events:
        kind, data = str(e["kind"]), e["data"] if isinstance(e["data"], dict) else {}
        if kind.startswith("console."):
            view.on_action(data)
        elif kind.startswith("handoff.") and e["call_id"] not in known:
            view.on_handoff(e["call_id"], kind, data, float(e["recorded_at"]))
        elif kind.startswith("control.") and e["call_id"] not in known:
            view.on_control(e["call_id"], kind.removeprefix("control."), data)


def rates(ledger: EvidenceLedger, tenant: str) -> dict[str, Any]:
    """Outcomes per assertion for the last hour and day, and drift flags."""
    now = time.time()
    out: dict[str, Any] = {
        "hour": ledger.outcome_counts(tenant, since=now - 3600),
        "day": ledger.outcome_counts(tenant, since=now - 86400),
        "drift": [],
    }
    try:
        from cxguard.evidence.drift import detect_drift

        out["drift"] = [f.to_dict() for f in detect_drift(ledger, tenant)]
    except Exception as exc:  # drift is a flag on the page, not a reason to show nothing
        log.warning("console: drift of tenant %s not computed: %s", tenant, exc)
    return out
