"""An alert sink that writes to the ``logging`` module (rich rendering lives in the CLI).

Its methods are synchronous, unlike the network sinks: logging does not wait on I/O the
event loop cares about, and the dispatcher calls it inline before the awaited sinks.
"""

from __future__ import annotations

import logging

from cxguard.model import Alert, HandoffRequest
from cxguard.sinks.serialization import to_json

_LEVELS = {"violation": logging.WARNING, "undetermined": logging.WARNING, "handoff": logging.ERROR}


class ConsoleAlertSink:
    """Logs each alert on ``logger`` (default ``cxguard.alerts``); ``as_json`` appends the
    full JSON form for log shippers."""

    def __init__(self, logger: logging.Logger | None = None, *, as_json: bool = False) -> None:
        self._log = logger or logging.getLogger("cxguard.alerts")
        self._as_json = as_json

    def publish(self, alert: Alert) -> None:
        v = alert.verdict
        self._log.log(
            _LEVELS.get(alert.kind, logging.WARNING),
            "%s [%s] call=%s turn=%d assertion=%s outcome=%s: %s%s",
            alert.kind,
            v.tenant,
            v.call_id,
            v.turn_index,
            v.assertion_id,
            v.outcome,
            alert.message,
            f" {to_json(alert)}" if self._as_json else "",
        )

    def publish_handoff(self, req: HandoffRequest) -> None:
        self._log.error(
            "handoff [%s] call=%s turn=%d assertion=%s: %s%s",
            req.tenant,
            req.call_id,
            req.turn_index,
            req.assertion_id,
            req.reason,
            f" {to_json(req)}" if self._as_json else "",
        )

    def close(self) -> None:
        return None
