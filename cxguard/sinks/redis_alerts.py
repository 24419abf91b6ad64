"""Alerts and handoff requests on Redis: a Stream per tenant (durable, consumer groups) plus
pub/sub on a channel of the same name (live dashboards).

Keys, with the default prefix ``cxguard``::

    cxguard:{tenant}:alerts      XADD (MAXLEN ~ stream_maxlen) + PUBLISH of the same JSON,
                                 once per alert id
    cxguard:{tenant}:alert:{alert id}                        SET NX EX, its dedupe marker
    cxguard:{tenant}:handoffs    XADD + PUBLISH, once per idempotency key
    cxguard:{tenant}:handoff:{sha256(idempotency key)[:32]}   SET NX EX, the dedupe marker

Keys are per tenant: one tenant's entries never land on another's stream, whatever call ids
they use. Each stream entry has the fields ``data`` (the JSON of :func:`to_json`), ``kind``,
``tenant``, ``call_id``, ``assertion_id`` and, for alerts, ``alert_id``. Marking and appending
run in one Lua script, so an alert delivered again (the outbox retries after a timeout whose
command Redis did run) is appended once. The runtime passes verdicts whose ``text``/``evidence``
are already redacted (``cxguard.pii.RedactionWindow``) and :func:`to_json` redacts every
free-text field again on the way out (``cxguard.pii.redact``). Redis outages raise
:class:`~cxguard.errors.SinkUnavailable`; other Redis errors :class:`~cxguard.errors.SinkError`;
neither names the server.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from cxguard.errors import ConfigError, SinkError, SinkUnavailable
from cxguard.model import Alert, HandoffRequest
from cxguard.sinks.messages import OutboxMessage, handoff_from
from cxguard.sinks.serialization import to_json

log = logging.getLogger(__name__)

TENANT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# Atomic "first time for this idempotency key": mark, append, publish. A crash between
# separate commands could otherwise leave the marker without the handoff.
_HANDOFF_LUA = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
    'data', ARGV[3], 'kind', 'handoff', 'call_id', ARGV[4], 'assertion_id', ARGV[5])
  redis.call('PUBLISH', KEYS[2], ARGV[3])
  return id
end
return false
"""


_ALERT_LUA = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
    'data', ARGV[3], 'kind', ARGV[4], 'tenant', ARGV[5], 'call_id', ARGV[6],
    'assertion_id', ARGV[7], 'alert_id', ARGV[8])
  redis.call('PUBLISH', KEYS[2], ARGV[3])
  return id
end
return false
"""


def validate_tenant(tenant: str) -> str:
    """``tenant`` if it is safe inside a key (``[A-Za-z0-9_.-]{1,64}``), else SinkError."""
    if not TENANT_RE.fullmatch(tenant):
        raise SinkError(f"invalid tenant name {tenant!r}: must match {TENANT_RE.pattern}")
    return tenant


@contextmanager
def _redis_errors(action: str) -> Iterator[None]:
    try:
        yield
    except (rexc.ConnectionError, rexc.TimeoutError, TimeoutError, OSError) as exc:
        log.debug("redis: could not %s: %s", action, exc)
        raise SinkUnavailable(
            f"redis unavailable while trying to {action} ({type(exc).__name__})"
        ) from exc
    except rexc.RedisError as exc:
        log.debug("redis: refused to %s: %s", action, exc)
        raise SinkError(f"redis refused to {action} ({type(exc).__name__})") from exc


class RedisAlertSink:
    """``RedisAlertSink("redis://127.0.0.1:6379/0")``; use from one event loop.

    As an outbox sink (:meth:`deliver`) it takes alerts and handoffs."""

    name = "redis"

    def __init__(
        self,
        url: str,
        stream_maxlen: int = 100_000,
        *,
        key_prefix: str = "cxguard",
        timeout_s: float = 2.0,
        retries: int = 1,
        handoff_ttl_s: int = 24 * 3600,
    ) -> None:
        if stream_maxlen < 1 or handoff_ttl_s < 1:
            raise SinkError("stream_maxlen and handoff_ttl_s must be positive")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", key_prefix):
            raise SinkError(f"invalid key prefix {key_prefix!r}")
        self._prefix = key_prefix
        self._maxlen = stream_maxlen
        self._ttl = handoff_ttl_s
        try:
            # Few, short retries: an alert that cannot go out must fail fast and visibly,
            # not stall the call's pipeline behind redis-py's default backoff.
            self._redis: aioredis.Redis = aioredis.Redis.from_url(
                url,
                socket_connect_timeout=timeout_s,
                socket_timeout=timeout_s,
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries),
                decode_responses=True,
            )
        except ValueError as exc:
            raise SinkError(f"invalid redis URL: {exc}") from exc
        self._handoff_script = self._redis.register_script(_HANDOFF_LUA)
        self._alert_script = self._redis.register_script(_ALERT_LUA)

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> RedisAlertSink:
        """Registry factory: ``url`` (required), ``stream_maxlen``, ``key_prefix``,
        ``timeout_s``, ``dedupe_ttl_s``."""
        known = {"url", "stream_maxlen", "key_prefix", "timeout_s", "dedupe_ttl_s"}
        unknown = set(options) - known
        if unknown or "url" not in options:
            raise ConfigError(
                f"sink {name!r} (redis): needs 'url'; unknown options {sorted(unknown)}"
            )
        sink = cls(
            str(options["url"]),
            int(options.get("stream_maxlen", 100_000)),
            key_prefix=str(options.get("key_prefix", "cxguard")),
            timeout_s=float(options.get("timeout_s", 2.0)),
            retries=0,
            handoff_ttl_s=int(options.get("dedupe_ttl_s", 24 * 3600)),
        )
        sink.name = name
        return sink

    def accepts(self, message: OutboxMessage) -> bool:
        return True

    def alert_marker_key(self, tenant: str, alert_id: str) -> str:
        return f"{self._prefix}:{validate_tenant(tenant)}:alert:{alert_id}"

    async def deliver(self, message: OutboxMessage) -> None:
        """Append the message once per id (a repeat is a no-op), as one Lua script."""
        if message.kind == "handoff":
            await self.publish_handoff(handoff_from(message))
            return
        data = message.data()
        verdict = data.get("verdict", {})
        keys = [
            self.alert_marker_key(message.tenant, message.message_id),
            self.alerts_key(message.tenant),
        ]
        args: list[str | int] = [
            self._ttl,
            self._maxlen,
            message.body,
            str(data.get("kind", "")),
            message.tenant,
            message.call_id,
            str(verdict.get("assertion_id", "")),
            message.message_id,
        ]
        with _redis_errors("publish an alert"):
            entry = await self._alert_script(keys=keys, args=args)
        if entry is None:
            log.debug("alert %s already on the stream", message.message_id)

    def alerts_key(self, tenant: str) -> str:
        return f"{self._prefix}:{validate_tenant(tenant)}:alerts"

    def handoffs_key(self, tenant: str) -> str:
        return f"{self._prefix}:{validate_tenant(tenant)}:handoffs"

    def handoff_marker_key(self, tenant: str, idempotency_key: str) -> str:
        digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
        return f"{self._prefix}:{validate_tenant(tenant)}:handoff:{digest}"

    async def ping(self) -> None:
        with _redis_errors("ping"):
            await self._redis.ping()

    async def publish(self, alert: Alert) -> None:
        """Append ``alert`` to its tenant's stream and publish it, in one MULTI/EXEC."""
        v = alert.verdict
        key = self.alerts_key(v.tenant)
        payload = to_json(alert)
        fields: dict[Any, Any] = {
            "data": payload,
            "kind": alert.kind,
            "tenant": v.tenant,
            "call_id": v.call_id,
            "assertion_id": v.assertion_id,
            "alert_id": alert.alert_id,
        }
        with _redis_errors("publish an alert"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xadd(key, fields, maxlen=self._maxlen, approximate=True)
                pipe.publish(key, payload)
                await pipe.execute()

    async def publish_handoff(self, req: HandoffRequest) -> None:
        """Append and publish ``req`` unless its idempotency key was seen within
        ``handoff_ttl_s`` (a retried request is then a no-op, logged at debug level)."""
        keys = [
            self.handoff_marker_key(req.tenant, req.idempotency_key),
            self.handoffs_key(req.tenant),
        ]
        args: list[str | int] = [
            self._ttl,
            self._maxlen,
            to_json(req),
            req.call_id,
            req.assertion_id,
        ]
        with _redis_errors("publish a handoff"):
            entry = await self._handoff_script(keys=keys, args=args)
        if entry is None:
            log.debug("handoff %s for call %s already published", req.idempotency_key, req.call_id)

    async def close(self) -> None:
        with _redis_errors("close"):
            await self._redis.aclose()

    async def __aenter__(self) -> RedisAlertSink:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()
