"""Sink types by name, so a deployment's sinks are built from settings.

``build_sink("redis", "redis", {"url": ...})`` returns a ready :class:`~cxguard.sinks.outbox.Sink`.
Adding a sink is one class with ``name``, ``accepts``, ``deliver``, ``close`` and a
``from_options(name, options)`` classmethod, plus one line in :data:`SINK_TYPES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cxguard.errors import ConfigError
from cxguard.sinks.alert_hooks import AlertWebhook, SlackAlertWebhook
from cxguard.sinks.console import ConsoleAlertSink
from cxguard.sinks.outbox import Sink
from cxguard.sinks.redis_alerts import RedisAlertSink
from cxguard.sinks.twilio_handoff import TwilioCallRedirect
from cxguard.sinks.webhook import WebhookHandoff

SinkFactory = Callable[[str, Mapping[str, Any]], Sink]

SINK_TYPES: dict[str, SinkFactory] = {
    "console": ConsoleAlertSink.from_options,
    "redis": RedisAlertSink.from_options,
    "handoff-webhook": WebhookHandoff.from_options,
    "twilio-redirect": TwilioCallRedirect.from_options,
    "alert-webhook": AlertWebhook.from_options,
    "slack": SlackAlertWebhook.from_options,
}


def build_sink(sink_type: str, name: str, options: Mapping[str, Any]) -> Sink:
    factory = SINK_TYPES.get(sink_type)
    if factory is None:
        raise ConfigError(
            f"unknown sink type {sink_type!r}; known: {', '.join(sorted(SINK_TYPES))}"
        )
    return factory(name, options)
