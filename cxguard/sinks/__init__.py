"""Where alerts and handoff requests go: one durable outbox in front of a registry of sinks
(the log, Redis Streams + pub/sub, handoff webhooks, Twilio call redirects).

Every message is put in the :class:`~cxguard.sinks.outbox.Outbox` first (a local file) and
delivered to each sink at least once, in order, deduplicated by its stable id
(:mod:`~cxguard.sinks.messages`). Callers catch :class:`~cxguard.errors.SinkError` /
:class:`~cxguard.errors.SinkUnavailable` only. The runtime redacts verdicts before handing
them over, and every payload is redacted once more as it is serialised
(:mod:`cxguard.sinks.serialization`).
"""

from __future__ import annotations

from cxguard.sinks.console import ConsoleAlertSink
from cxguard.sinks.messages import (
    OutboxMessage,
    alert_message,
    derive_alert_id,
    handoff_key,
    handoff_message,
)
from cxguard.sinks.outbox import Outbox, OutboxOptions, OutboxStore, Route, Sink
from cxguard.sinks.redis_alerts import RedisAlertSink, validate_tenant
from cxguard.sinks.registry import SINK_TYPES, build_sink
from cxguard.sinks.serialization import to_json, to_json_dict

__all__ = [
    "SINK_TYPES",
    "ConsoleAlertSink",
    "Outbox",
    "OutboxMessage",
    "OutboxOptions",
    "OutboxStore",
    "RedisAlertSink",
    "Route",
    "Sink",
    "alert_message",
    "build_sink",
    "derive_alert_id",
    "handoff_key",
    "handoff_message",
    "to_json",
    "to_json_dict",
    "validate_tenant",
]
