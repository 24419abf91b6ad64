"""Where alerts and handoff requests go: Redis (streams + pub/sub) and the log.

Network sinks share the async surface :class:`AlertSink` (``ConsoleAlertSink`` has the same
methods, synchronous); callers catch :class:`~cxguard.errors.SinkError` /
:class:`~cxguard.errors.SinkUnavailable` only. The runtime redacts verdicts before
handing them over, and every payload is redacted once more as it is serialised
(:mod:`cxguard.sinks.serialization`).
"""

from __future__ import annotations

from typing import Protocol

from cxguard.model import Alert, HandoffRequest
from cxguard.sinks.console import ConsoleAlertSink
from cxguard.sinks.redis_alerts import RedisAlertSink, validate_tenant
from cxguard.sinks.serialization import to_json, to_json_dict


class AlertSink(Protocol):
    async def publish(self, alert: Alert) -> None: ...

    async def publish_handoff(self, req: HandoffRequest) -> None: ...

    async def close(self) -> None: ...


__all__ = [
    "AlertSink",
    "ConsoleAlertSink",
    "RedisAlertSink",
    "to_json",
    "to_json_dict",
    "validate_tenant",
]
