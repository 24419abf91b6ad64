"""Alerts and handoff requests into the durable outbox, and the sinks built from settings.

Publishing is a fast local write (:class:`~cxguard.sinks.outbox.Outbox`): it never waits on
Redis or a webhook, so a sink that is down never stalls a call's pipeline. Each sink's
worker delivers at least once, in order; every delivery state (``delivered``, ``retrying``,
``failed``) is recorded as evidence on the call's chain (``alert.*`` / ``handoff.*``).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, cast

from cxguard.errors import SinkError
from cxguard.model import Alert, CallInfo, HandoffRequest, Verdict
from cxguard.pii import redact
from cxguard.runtime import metrics
from cxguard.runtime.evidence_writer import EvidenceWriter, state_dir
from cxguard.runtime.settings import Settings
from cxguard.sinks.console import ConsoleAlertSink
from cxguard.sinks.messages import (
    MessageKind,
    OutboxMessage,
    alert_message,
    handoff_key,
    handoff_message,
)
from cxguard.sinks.outbox import DeliveryState, Outbox, OutboxStore, Route, describe
from cxguard.sinks.ratelimit import at_least
from cxguard.sinks.redis_alerts import RedisAlertSink
from cxguard.sinks.registry import build_sink
from cxguard.sinks.twilio_handoff import TwilioCallRedirect
from cxguard.sinks.webhook import WebhookHandoff

log = logging.getLogger(__name__)

HANDOFF_MAX_AGE_S = 300.0
"""A handoff to an HTTP target still undelivered this long after it was raised is failed:
the caller has hung up or been helped by then."""


def build_routes(settings: Settings) -> list[Route]:
    """The log, Redis (``redis_url``), the handoff webhook, a Twilio redirect per tenant with
    credentials, then ``settings.sinks``."""
    routes = [Route(ConsoleAlertSink(), record=False)]
    if settings.redis_url:
        routes.append(Route(RedisAlertSink(settings.redis_url, timeout_s=1.0, retries=0)))
    h = settings.handoff
    handoff_only: frozenset[MessageKind] = frozenset({"handoff"})
    if h.webhook_url:
        secret = h.webhook_secret.encode() if h.webhook_secret else None
        hook = WebhookHandoff(h.webhook_url, secret, h.timeout_s, retries=0)
        routes.append(Route(hook, kinds=handoff_only, max_age_s=HANDOFF_MAX_AGE_S))
    twilio = [t for t in settings.tenants if t.twilio_auth_token]
    for t in twilio:
        sink = TwilioCallRedirect(
            t.twilio_account_sid,
            cast(str, t.twilio_auth_token),
            t.handoff_twiml or h.twiml,
            h.twilio_api_base,
            h.timeout_s,
            retries=0,
            tenant=t.name,
        )
        sink.name = "twilio" if len(twilio) == 1 else f"twilio:{t.name}"
        routes.append(
            Route(
                sink, kinds=handoff_only, tenants=frozenset({t.name}), max_age_s=HANDOFF_MAX_AGE_S
            )
        )
    for s in settings.sinks:
        given = {"url": s.url, "secret": s.secret}
        options = {**s.options, **{k: v for k, v in given.items() if v is not None}}
        extra = build_sink(s.type, s.name or s.type, options)
        kinds = frozenset(cast(MessageKind, k) for k in s.kinds)
        severities = frozenset(s.severities)
        if s.min_severity is not None:  # any sink type: a floor is a set of severities
            floor = at_least(s.min_severity, f"sink {s.name or s.type!r}")
            severities = floor & severities if severities else floor
        routes.append(Route(extra, kinds, frozenset(s.tenants), severities, s.max_age_s))
    return routes


def open_outbox(
    settings: Settings, evidence: EvidenceWriter, extra: Sequence[Route] = ()
) -> tuple[Outbox, AlertDispatcher]:
    """``extra``: routes the process adds beside the configured ones (the live console)."""
    store = OutboxStore(state_dir(settings) / "outbox.db")
    alerts = AlertDispatcher(evidence)
    routes = [*build_routes(settings), *extra]
    outbox = Outbox(store, routes, on_state=alerts.record_state)
    alerts.outbox = outbox
    return outbox, alerts


class AlertDispatcher:
    def __init__(self, evidence: EvidenceWriter, outbox: Outbox | None = None) -> None:
        self._evidence = evidence
        self.outbox = outbox

    @property
    def redis_configured(self) -> bool:
        return self.outbox is not None and any(r.sink.name == "redis" for r in self.outbox.routes)

    async def publish(self, alert: Alert) -> None:
        """Put ``alert`` in the outbox (a local write); delivery happens behind it."""
        metrics.ALERTS.labels(kind=alert.kind).inc()
        await self.enqueue(alert_message(alert), alert.verdict)

    async def enqueue(self, message: OutboxMessage, verdict: Verdict) -> None:
        assert self.outbox is not None, "open_outbox() wires the outbox"
        try:
            await self.outbox.put([message])
        except SinkError as exc:
            metrics.ALERT_FAILURES.labels(sink="outbox").inc()
            log.error("%s %s not queued: %s", message.kind, message.message_id, exc)
            info = CallInfo(message.call_id, message.tenant, "offline")
            await self._evidence.event(
                info,
                f"{message.kind}.failed",
                verdict.end_ms,
                {"sink": "outbox", "id": message.message_id, "error": describe(exc)},
            )

    def record_state(
        self, message: OutboxMessage, sink: str, state: DeliveryState, data: Mapping[str, Any]
    ) -> None:
        """The outbox's report of a delivery state change, recorded on the call's chain."""
        metrics.DELIVERIES.labels(sink=sink, state=state).inc()
        if message.kind == "handoff":
            metrics.HANDOFFS.labels(result=state).inc()
        if state != "delivered":
            metrics.ALERT_FAILURES.labels(sink=sink).inc()
        info = CallInfo(message.call_id, message.tenant, "offline")
        detail = {"sink": sink, "target": sink.split(":")[0], "id": message.message_id, **data}
        self._evidence.submit_event(info, f"{message.kind}.{state}", None, detail)


class HandoffDispatcher:
    """One handoff per call at most, keyed by (tenant, call id): a human is already on the
    way after the first. The key also dedupes across restarts (the outbox and the sinks
    drop a handoff id they have)."""

    def __init__(self, alerts: AlertDispatcher, evidence: EvidenceWriter) -> None:
        self._alerts = alerts
        self._evidence = evidence
        self._done: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def request(self, info: CallInfo, verdict: Verdict) -> None:
        key = (info.tenant, info.call_id)
        if key in self._done:
            return
        self._done[key] = None
        while len(self._done) > 100_000:
            self._done.popitem(last=False)
        req = HandoffRequest(
            call_id=info.call_id,
            tenant=info.tenant,
            source=info.source,
            assertion_id=verdict.assertion_id,
            turn_index=verdict.turn_index,
            reason=redact(verdict.evidence),
            idempotency_key=handoff_key(info.tenant, info.call_id),
            requested_at_wall=time.time(),
            account_sid=info.account_sid,
        )
        await self._evidence.event(
            info,
            "handoff.requested",
            verdict.end_ms,
            {"assertion": verdict.assertion_id, "key": req.idempotency_key},
        )
        await self._alerts.enqueue(handoff_message(req, verdict.severity), verdict)

    async def close(self) -> None:
        return None
