"""Handoff requests as signed HTTP POSTs, with retries that keep one idempotency key.

Each request is a JSON body (:func:`cxguard.sinks.serialization.to_json`: ``type``,
``schema`` and the :class:`~cxguard.model.HandoffRequest` fields) with these headers::

    Content-Type: application/json
    Idempotency-Key: <request.idempotency_key>     the same on every retry
    X-Cxguard-Timestamp: <unix seconds>            fresh on every attempt
    X-Cxguard-Signature: sha256=<hex>              only when a secret is configured

The signature is HMAC-SHA256 with the shared secret over ``"<timestamp>.<body>"`` (the raw
body bytes as received). A receiver verifies it like this (or with :func:`verify_signature`)::

    expected = hmac.new(secret, ts.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest("sha256=" + expected, signature_header)
    ok = ok and abs(time.time() - int(ts)) <= 300        # refuse replays of old requests

and deduplicates on ``Idempotency-Key``: a retry after a lost response repeats the request.

Connection errors, timeouts, 5xx and 429 are retried with exponential backoff and jitter
(``Retry-After`` is honoured when it is at most ``max_retry_after_s``; a longer one ends
the retries, since a handoff that late is useless). Other 4xx answers are not retried. All
failures leave as :class:`~cxguard.errors.SinkUnavailable` (the target could not be reached
or kept failing) or :class:`~cxguard.errors.SinkError` (it refused the request).
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from cxguard.errors import ConfigError, SinkError, SinkUnavailable
from cxguard.model import HandoffRequest
from cxguard.sinks.messages import OutboxMessage, handoff_from
from cxguard.sinks.serialization import to_json

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryOptions:
    retries: int = 3
    """Attempts after the first one."""
    backoff_s: float = 0.2
    """Delay before the first retry; doubled for each further one, then jittered."""
    max_backoff_s: float = 2.0
    max_retry_after_s: float = 2.0
    """The longest ``Retry-After`` that is waited for."""

    def delay(self, retry: int) -> float:
        """Delay before retry number ``retry`` (0-based): half fixed, half random, so that
        many guards retrying after one outage do not hit the target in lockstep."""
        base = min(self.max_backoff_s, self.backoff_s * 2.0**retry)
        return base / 2 + random.uniform(0, base / 2)


def make_client(timeout_s: float) -> httpx.AsyncClient:
    """One pooled client per target: a handoff reuses a warm connection when it can."""
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), limits=limits)


def check_url(url: str, what: str) -> None:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"{what}: {url!r} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"{what}: {url!r} is not an http(s) URL")


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or HTTP date), None if absent or invalid."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def post_with_retries(
    client: httpx.AsyncClient,
    url: str,
    *,
    target: str,
    options: RetryOptions,
    headers: Callable[[], Mapping[str, str]],
    content: bytes,
    auth: httpx.Auth | None = None,
) -> httpx.Response:
    """POST ``content`` until a 2xx/3xx answer; ``headers()`` is called for every attempt."""
    last = "no attempt made"
    for attempt in range(options.retries + 1):
        wait: float | None = None
        try:
            response = await client.post(
                url,
                content=content,
                headers=dict(headers()),
                auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TimeoutException as exc:
            last = f"timed out ({type(exc).__name__})"
        except httpx.TransportError as exc:
            last = f"unreachable ({type(exc).__name__}: {exc})"
        else:
            if response.status_code < 400:
                return response
            detail = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code not in RETRY_STATUSES:
                raise SinkError(f"{target} refused the handoff: {detail}")
            last = detail
            wait = retry_after_s(response)
            if wait is not None and wait > options.max_retry_after_s:
                raise SinkUnavailable(f"{target}: {detail} (Retry-After {wait:.0f} s is too long)")
        if attempt == options.retries:
            break
        delay = options.delay(attempt) if wait is None else wait
        log.warning(
            "%s: attempt %d failed (%s); retrying in %.2f s", target, attempt + 1, last, delay
        )
        await asyncio.sleep(delay)
    raise SinkUnavailable(f"{target}: gave up after {options.retries + 1} attempts: {last}")


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Cxguard-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify_signature(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookHandoff:
    """POSTs each :class:`HandoffRequest` to one URL (see the module docstring).

    As an outbox sink (:meth:`deliver`, handoffs only) each outbox attempt is one POST
    (``retries`` 0 from the registry): the outbox does the retrying, and keeps the
    request's ``Idempotency-Key``."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: bytes | None,
        timeout_s: float = 2.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        *,
        max_retry_after_s: float = 2.0,
    ) -> None:
        check_url(url, "webhook url")
        self.url = url
        self._secret = secret
        self._retry = RetryOptions(
            retries=retries, backoff_s=backoff_s, max_retry_after_s=max_retry_after_s
        )
        self._client = make_client(timeout_s)

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> WebhookHandoff:
        """Registry factory: ``url`` (required), ``secret``, ``timeout_s``."""
        unknown = set(options) - {"url", "secret", "timeout_s"}
        if unknown or "url" not in options:
            raise ConfigError(
                f"sink {name!r} (handoff-webhook): needs 'url'; unknown {sorted(unknown)}"
            )
        secret = options.get("secret")
        sink = cls(
            str(options["url"]),
            str(secret).encode() if secret else None,
            float(options.get("timeout_s", 2.0)),
            retries=0,
        )
        sink.name = name
        return sink

    def accepts(self, message: OutboxMessage) -> bool:
        return message.kind == "handoff"

    async def deliver(self, message: OutboxMessage) -> None:
        await self._post(handoff_from(message), message.body.encode("utf-8"))

    async def send(self, request: HandoffRequest) -> None:
        await self._post(request, to_json(request).encode("utf-8"))

    async def _post(self, request: HandoffRequest, body: bytes) -> None:

        def headers() -> dict[str, str]:
            ts = str(int(time.time()))
            out = {
                "Content-Type": "application/json",
                "Idempotency-Key": request.idempotency_key,
                "X-Cxguard-Timestamp": ts,
            }
            if self._secret is not None:
                out["X-Cxguard-Signature"] = sign(self._secret, ts, body)
            return out

        await post_with_retries(
            self._client,
            self.url,
            target=f"webhook {self.url}",
            options=self._retry,
            headers=headers,
            content=body,
        )

    async def close(self) -> None:
        await self._client.aclose()
