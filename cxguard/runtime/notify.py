"""Fan alerts and handoff requests out to the configured sinks.

A sink that is down never blocks or breaks evaluation: its failure is logged, counted and
recorded as evidence, and the other sinks still get the message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from cxguard.errors import SinkError
from cxguard.model import Alert, CallInfo, HandoffRequest, Verdict
from cxguard.runtime import metrics
from cxguard.runtime.evidence_writer import EvidenceWriter
from cxguard.runtime.settings import Settings
from cxguard.sinks.console import ConsoleAlertSink
from cxguard.sinks.redis_alerts import RedisAlertSink
from cxguard.sinks.twilio_handoff import TwilioCallRedirect
from cxguard.sinks.webhook import WebhookHandoff

log = logging.getLogger(__name__)


class HandoffTarget(Protocol):
    name: str

    async def send(self, request: HandoffRequest) -> None: ...

    async def close(self) -> None: ...


class AlertDispatcher:
    def __init__(self, redis_url: str | None, evidence: EvidenceWriter) -> None:
        self._console = ConsoleAlertSink()
        self.redis = RedisAlertSink(redis_url) if redis_url else None
        self._evidence = evidence

    @property
    def redis_configured(self) -> bool:
        return self.redis is not None

    async def publish(self, alert: Alert) -> None:
        metrics.ALERTS.labels(kind=alert.kind).inc()
        self._console.publish(alert)
        if self.redis is None:
            return
        try:
            await self.redis.publish(alert)
        except SinkError as exc:
            metrics.ALERT_FAILURES.labels(sink="redis").inc()
            log.error("alert not published to Redis: %s", exc)
            v = alert.verdict
            info = CallInfo(v.call_id, v.tenant, "offline")
            await self._evidence.event(
                info,
                "alert.failed",
                v.end_ms,
                {"sink": "redis", "assertion": v.assertion_id, "error": str(exc)},
            )

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.close()


class HandoffDispatcher:
    """One handoff per call at most: a human is already on the way after the first."""

    def __init__(
        self, settings: Settings, alerts: AlertDispatcher, evidence: EvidenceWriter
    ) -> None:
        self._settings = settings
        self._alerts = alerts
        self._evidence = evidence
        self._done: set[str] = set()
        self.targets: list[HandoffTarget] = _targets(settings)

    async def request(self, info: CallInfo, verdict: Verdict) -> None:
        if info.call_id in self._done:
            return
        self._done.add(info.call_id)
        req = HandoffRequest(
            call_id=info.call_id,
            tenant=info.tenant,
            source=info.source,
            assertion_id=verdict.assertion_id,
            turn_index=verdict.turn_index,
            reason=verdict.evidence,
            idempotency_key=f"{info.call_id}:{verdict.turn_index}",
            requested_at_wall=time.time(),
            account_sid=info.account_sid,
        )
        await self._evidence.event(
            info,
            "handoff.requested",
            verdict.end_ms,
            {"assertion": verdict.assertion_id, "key": req.idempotency_key},
        )
        sends = []
        if self._alerts.redis is not None:
            sends.append(("redis", self._alerts.redis.publish_handoff(req)))
        sends.extend((t.name, t.send(req)) for t in self.targets if _accepts(t, req))
        results = await asyncio.gather(*(s for _, s in sends), return_exceptions=True)
        for (name, _), result in zip(sends, results, strict=True):
            ok = not isinstance(result, BaseException)
            metrics.HANDOFFS.labels(result="delivered" if ok else "failed").inc()
            data = {"target": name, "key": req.idempotency_key}
            if not ok:
                data["error"] = str(result)
                log.error("handoff to %s failed for call %s: %s", name, info.call_id, result)
            kind = "handoff.delivered" if ok else "handoff.failed"
            await self._evidence.event(info, kind, verdict.end_ms, data)

    async def close(self) -> None:
        for target in self.targets:
            await target.close()


def _accepts(target: HandoffTarget, request: HandoffRequest) -> bool:
    accepts = getattr(target, "accepts", None)
    return accepts is None or bool(accepts(request))


def _targets(settings: Settings) -> list[HandoffTarget]:
    """Webhook (one for all tenants) and a Twilio call redirect per tenant with credentials."""
    h = settings.handoff
    targets: list[HandoffTarget] = []
    if h.webhook_url:
        secret = h.webhook_secret.encode() if h.webhook_secret else None
        targets.append(WebhookHandoff(h.webhook_url, secret, h.timeout_s, h.retries))
    for t in settings.tenants:
        if t.twilio_auth_token:
            targets.append(
                TwilioCallRedirect(
                    t.twilio_account_sid,
                    t.twilio_auth_token,
                    t.handoff_twiml or h.twiml,
                    h.twilio_api_base,
                    h.timeout_s,
                    h.retries,
                    tenant=t.name,
                )
            )
    return targets
