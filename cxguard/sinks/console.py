"""An alert sink that writes to the ``logging`` module (rich rendering lives in the CLI).

``publish``/``publish_handoff`` are synchronous (logging does not wait on I/O the event loop
cares about); as an outbox sink (:meth:`ConsoleAlertSink.deliver`) it logs what the outbox
hands it, like any other sink.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from cxguard.errors import ConfigError
from cxguard.model import Alert, HandoffRequest
from cxguard.sinks.messages import OutboxMessage
from cxguard.sinks.serialization import to_json

_LEVELS = {"violation": logging.WARNING, "undetermined": logging.WARNING, "handoff": logging.ERROR}


class ConsoleAlertSink:
    """Logs each alert on ``logger`` (default ``cxguard.alerts``); ``as_json`` appends the
    full JSON form for log shippers."""

    name = "console"

    def __init__(self, logger: logging.Logger | None = None, *, as_json: bool = False) -> None:
        self._log = logger or logging.getLogger("cxguard.alerts")
        self._as_json = as_json

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> ConsoleAlertSink:
        """Registry factory: ``logger`` (name), ``as_json``."""
        unknown = set(options) - {"logger", "as_json"}
        if unknown:
            raise ConfigError(f"sink {name!r} (console): unknown options {sorted(unknown)}")
        logger = logging.getLogger(str(options.get("logger", "cxguard.alerts")))
        sink = cls(logger, as_json=bool(options.get("as_json", False)))
        sink.name = name
        return sink

    def accepts(self, message: OutboxMessage) -> bool:
        return True

    async def deliver(self, message: OutboxMessage) -> None:
        d = message.data()
        extra = f" {message.body}" if self._as_json else ""
        if message.kind == "handoff":
            self._log.error(
                "handoff [%s] call=%s turn=%s assertion=%s: %s%s",
                message.tenant,
                message.call_id,
                d.get("turn_index"),
                d.get("assertion_id"),
                d.get("reason"),
                extra,
            )
            return
        v = d.get("verdict", {})
        self._log.log(
            _LEVELS.get(str(d.get("kind")), logging.WARNING),
            "%s [%s] call=%s turn=%s assertion=%s outcome=%s: %s%s",
            d.get("kind"),
            message.tenant,
            message.call_id,
            v.get("turn_index"),
            v.get("assertion_id"),
            v.get("outcome"),
            d.get("message"),
            extra,
        )

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

    async def close(self) -> None:
        return None
