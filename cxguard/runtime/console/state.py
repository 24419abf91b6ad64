"""What one tenant's console shows, sans I/O: calls with their transcripts, alerts (violations,
undetermined, errors) with what supervisors did about them, and handoffs with their delivery.

Every ``on_*`` method folds one fact in and returns the update to push to the tenant's open
pages (None when nothing visible changed: an outbox redelivery of an alert already shown,
a speaking state that did not change). Everything kept is bounded; every string shown was
redacted before it got here and is redacted again on the way in (:func:`_clean`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cxguard import pii

MAX_CALLS = 200
MAX_TURNS = 400
MAX_ALERTS = 500
MAX_HANDOFFS = 200

Update = dict[str, Any]


IDENTIFIERS = frozenset(
    {"alert_id", "action_id", "call_id", "key", "id", "tenant", "assertion", "assertions",
     "kind", "severity", "outcome", "speaker", "status", "action", "source", "sinks", "state"}
)  # fmt: skip
"""Shown as given (ids consumers match on, enum values); every other string is redacted."""


def _clean(value: Any, key: str = "") -> Any:
    if key in IDENTIFIERS:
        return value
    if isinstance(value, Mapping):
        return {k: _clean(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return pii.redact_data(value)


@dataclass
class CallView:
    call_id: str
    source: str
    started_wall: float
    ended_wall: float | None = None
    end_reason: str | None = None
    speaking: tuple[str, ...] = ()
    intent: str | None = None
    authenticated: bool | None = None
    turns: OrderedDict[int, dict[str, Any]] = field(default_factory=OrderedDict)

    def summary(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "source": self.source,
            "started": self.started_wall,
            "ended": self.ended_wall,
            "end_reason": self.end_reason,
            "live": self.ended_wall is None,
            "speaking": list(self.speaking),
            "intent": self.intent,
            "authenticated": self.authenticated,
            "turn_count": len(self.turns),
        }


def alert_view(alert: Mapping[str, Any]) -> dict[str, Any]:
    """An alert as the outbox carries it (``to_json`` of :class:`~cxguard.model.Alert`)."""
    v = alert.get("verdict", {})
    view: dict[str, Any] = _clean(
        {
            "alert_id": alert.get("alert_id"),
            "kind": alert.get("kind"),
            "message": alert.get("message"),
            "call_id": v.get("call_id"),
            "turn": v.get("turn_index"),
            "speaker": v.get("speaker"),
            "assertion": v.get("assertion_id"),
            "assertions": list(alert.get("assertions") or [v.get("assertion_id")]),
            "severity": v.get("severity"),
            "outcome": v.get("outcome"),
            "evidence": v.get("evidence"),
            "text": v.get("text"),
            "decided_at": v.get("decided_at_wall"),
            "status": "open",
            "assignee": None,
            "actions": [],
        }
    )
    return view


class TenantView:
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.calls: OrderedDict[str, CallView] = OrderedDict()
        self.alerts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.handoffs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._actions: set[str] = set()
        self.history_loaded = False

    def snapshot(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "calls": [
                {**c.summary(), "turns": list(c.turns.values())} for c in self.calls.values()
            ],
            "alerts": list(reversed(self.alerts.values())),  # newest first
            "handoffs": list(reversed(self.handoffs.values())),
        }

    # ------------------------------------------------------------------ calls

    def _call(self, call_id: str, source: str = "", started: float = 0.0) -> CallView:
        call = self.calls.get(call_id)
        if call is None:
            call = self.calls[call_id] = CallView(call_id, source, started)
            while len(self.calls) > MAX_CALLS:
                self.calls.popitem(last=False)
        return call

    def _call_update(self, call: CallView) -> Update:
        return {"type": "call", "call": call.summary()}

    def on_call_started(
        self, call_id: str, source: str, wall: float, parameters: Mapping[str, Any]
    ) -> Update:
        call = self._call(call_id, source, wall)
        call.source, call.ended_wall, call.end_reason = source, None, None
        call.started_wall = call.started_wall or wall
        if isinstance(parameters.get("intent"), str):
            call.intent = str(_clean(parameters["intent"]))
        claimed = str(parameters.get("authenticated", "")).lower()
        if claimed in ("true", "false"):  # what the platform said at the start of the call
            call.authenticated = claimed == "true"
        return self._call_update(call)

    def on_call_ended(self, call_id: str, wall: float, reason: str | None) -> Update:
        call = self._call(call_id, started=wall)
        call.ended_wall, call.end_reason, call.speaking = wall, reason, ()
        return self._call_update(call)

    def on_speaking(self, call_id: str, speaking: tuple[str, ...]) -> Update | None:
        call = self.calls.get(call_id)
        if call is None or call.speaking == speaking or call.ended_wall is not None:
            return None
        call.speaking = speaking
        return self._call_update(call)

    def on_control(self, call_id: str, name: str, data: Mapping[str, Any]) -> Update | None:
        call = self.calls.get(call_id)
        if call is None:
            return None
        if name == "intent" and isinstance(data.get("intent"), str):
            call.intent = str(_clean(data["intent"]))
        elif name in ("authenticated", "unauthenticated"):
            call.authenticated = name == "authenticated"
        else:
            return None
        return self._call_update(call)

    def on_turn(self, call_id: str, turn: Mapping[str, Any]) -> Update:
        call = self._call(call_id)
        shown = _clean(dict(turn))
        call.turns[int(turn["index"])] = shown
        while len(call.turns) > MAX_TURNS:
            call.turns.popitem(last=False)
        return {"type": "turn", "call_id": call_id, "turn": shown}

    # ------------------------------------------------------------------ alerts and handoffs

    def on_alert(self, alert: Mapping[str, Any]) -> Update | None:
        view = alert_view(alert)
        alert_id = view["alert_id"]
        if not alert_id or alert_id in self.alerts:
            return None  # delivered again (at least once): shown already
        self.alerts[alert_id] = view
        while len(self.alerts) > MAX_ALERTS:
            self.alerts.popitem(last=False)
        return {"type": "alert", "alert": view}

    def on_action(self, action: Mapping[str, Any]) -> Update | None:
        """An acknowledgement, assignment or comment (as recorded in the ledger)."""
        action_id = str(action.get("action_id", ""))
        alert = self.alerts.get(str(action.get("alert_id", "")))
        if not action_id or action_id in self._actions:
            return None
        self._actions.add(action_id)
        shown = _clean(dict(action))
        if alert is not None:
            alert["actions"].append(shown)
            if shown.get("action") == "acknowledge":
                alert["status"] = "acknowledged"
            elif shown.get("action") == "assign":
                alert["assignee"] = shown.get("assignee")
        return {"type": "action", "alert_id": action.get("alert_id"), "action": shown}

    def on_handoff(
        self, call_id: str, kind: str, data: Mapping[str, Any], wall: float
    ) -> Update | None:
        """``handoff.requested`` / ``.delivered`` / ``.retrying`` / ``.failed`` events."""
        state = kind.removeprefix("handoff.")
        key = str(data.get("key") or data.get("id") or call_id)
        handoff = self.handoffs.get(key)
        if handoff is None:
            handoff = self.handoffs[key] = {
                "key": key,
                "call_id": call_id,
                "assertion": None,
                "requested": wall,
                "state": "requested",
                "sinks": {},
            }
            while len(self.handoffs) > MAX_HANDOFFS:
                self.handoffs.popitem(last=False)
        if state == "requested":
            handoff["assertion"] = data.get("assertion")
        elif isinstance(data.get("sink"), str):
            handoff["sinks"][data["sink"]] = state
            states = set(handoff["sinks"].values())
            handoff["state"] = (
                "failed" if "failed" in states else "retrying" if "retrying" in states else state
            )
        else:
            return None
        return {"type": "handoff", "handoff": _clean(handoff)}
