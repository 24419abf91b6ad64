"""Alerts to where supervisors already look: a signed generic webhook (Standard Webhooks) and
a Slack-compatible incoming webhook. Both are outbox sinks (at least once, in order, one POST
per outbox attempt), alerts only (tenants and ``min_severity`` are the route's filters, from
settings), and rate-limited per call
(:mod:`cxguard.sinks.ratelimit`: the excess is posted as one digest, never dropped).

**Generic webhook** (type ``alert-webhook``), per https://www.standardwebhooks.com::

    POST <url>
    webhook-id: <alert id>                  stable: the same alert retried keeps it
    webhook-timestamp: <unix seconds>       fresh on every attempt
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>
    {"type": "cxguard.alert", "timestamp": "<ISO 8601>", "data": <the alert's JSON>}

``key`` is the base64 part of the ``whsec_…`` secret; :func:`verify` is what a receiver runs
(any Standard Webhooks library does the same). A digest is ``"type": "cxguard.alert_digest"``.

**Slack** (type ``slack``): ``{"text": …, "blocks": […]}`` as incoming webhooks take it; its
URL is the secret (there is no signature).

Every string sent has been redacted by :mod:`cxguard.sinks.serialization`; what these sinks
compose from it is redacted once more.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cxguard import pii
from cxguard.errors import ConfigError, SinkError
from cxguard.sinks.messages import OutboxMessage
from cxguard.sinks.ratelimit import CallRateLimit, Digest
from cxguard.sinks.webhook import RetryOptions, check_url, make_client, post_with_retries

log = logging.getLogger(__name__)

TOLERANCE_S = 300.0


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret."""
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("alert webhook secret must be whsec_<base64>") from None
    if len(key) < 16:
        raise ConfigError("alert webhook secret: the key must be at least 16 bytes")
    return key


def signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> bool:
    """A receiver's check: one ``v1`` signature matches and the timestamp is recent."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts = h.get("webhook-id", ""), h.get("webhook-timestamp", "")
    try:
        sent = int(ts)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > TOLERANCE_S:
        return False
    expected = signature(webhook_key(secret), msg_id, ts, body)
    return any(hmac.compare_digest(expected, s) for s in h.get("webhook-signature", "").split())


class _AlertPost:
    """What both sinks share: severity filter, per-call limit, digests, one POST per try."""

    name = "alert-post"
    type_name = ""

    def __init__(
        self,
        url: str,
        *,
        max_per_call: int = 5,
        window_s: float = 60.0,
        timeout_s: float = 2.0,
    ) -> None:
        check_url(url, f"{self.type_name} url")
        self.url = url
        self.limit = CallRateLimit(max_per_call, window_s)
        self._client = make_client(timeout_s)
        self._flusher: asyncio.Task[None] | None = None
        self._unsent: list[Digest] = []

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> _AlertPost:
        """Registry factory: ``url``, ``max_per_call``, ``window_s``, ``timeout_s`` (and
        ``secret`` for the generic webhook)."""
        allowed = {"url", "max_per_call", "window_s", "timeout_s", *cls._extra()}
        unknown = set(options) - allowed
        if unknown or "url" not in options:
            raise ConfigError(
                f"sink {name!r} ({cls.type_name}): needs 'url'; unknown {sorted(unknown)}"
            )
        sink = cls._build(str(options["url"]), options)
        sink.limit = CallRateLimit(
            int(options.get("max_per_call", 5)), float(options.get("window_s", 60.0))
        )
        sink.name = name
        return sink

    @classmethod
    def _extra(cls) -> set[str]:
        return set()

    @classmethod
    def _build(cls, url: str, options: Mapping[str, Any]) -> _AlertPost:
        return cls(url, timeout_s=float(options.get("timeout_s", 2.0)))

    def accepts(self, message: OutboxMessage) -> bool:
        return message.kind == "alert"

    async def deliver(self, message: OutboxMessage) -> Mapping[str, Any] | None:
        d = message.data()
        v = d.get("verdict", {})
        now = time.time()
        admitted = self.limit.admit(
            message.tenant,
            message.call_id,
            message.message_id,
            str(v.get("assertion_id", "")),
            message.severity,
            now,
        )
        if not admitted:
            digest = self.limit.open_digest(message.tenant, message.call_id)
            self._wake_flusher()
            return {"folded": True, "digest_window_end": digest.window_end if digest else now}
        try:
            await self._post(message.message_id, self.payload(d))
        except BaseException:
            self.limit.refund(message.tenant, message.call_id)
            raise
        return None

    async def _post(self, msg_id: str, payload: dict[str, Any], retries: int = 0) -> None:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        await post_with_retries(
            self._client,
            self.url,
            target=f"{self.type_name} sink {self.name}",
            options=RetryOptions(retries=retries),
            headers=lambda: self.headers(msg_id, body),
            content=body,
        )

    def headers(self, msg_id: str, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def payload(self, alert: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError  # each sink type (alert-webhook, slack) shapes its body

    def digest_payload(self, digest: Digest) -> dict[str, Any]:
        raise NotImplementedError  # each sink type shapes its digest

    # ------------------------------------------------------------------ digests

    def _wake_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        backoff = 0.5
        while True:
            self._unsent += self.limit.due(time.time())
            if self._unsent:
                if await self._send_digests(retries=1):
                    backoff = 0.5
                else:
                    await asyncio.sleep(backoff)
                    backoff = min(10.0, backoff * 2)
                continue
            due = self.limit.next_due()
            if due is None:
                return
            await asyncio.sleep(max(0.0, due - time.time()))

    async def _send_digests(self, retries: int) -> bool:
        while self._unsent:
            digest = self._unsent[0]
            try:
                await self._post(digest.digest_id, self.digest_payload(digest), retries)
            except SinkError as exc:
                log.warning("%s: digest %s not delivered yet: %s", self.name, digest.digest_id, exc)
                return False
            self._unsent.pop(0)
            log.info("%s: %s", self.name, digest.summary())
        return True

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        self._unsent += self.limit.due(time.time(), everything=True)
        if not await self._send_digests(retries=0):
            for d in self._unsent:  # evidence has each folded alert; the log says the rest
                log.error("%s: digest lost at shutdown: %s", self.name, d.summary())
        await self._client.aclose()


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


class AlertWebhook(_AlertPost):
    """Standard Webhooks POSTs of each alert (see the module docstring)."""

    name = "alert-webhook"
    type_name = "alert-webhook"

    def __init__(self, url: str, secret: str | None, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._key = webhook_key(secret) if secret else None

    @classmethod
    def _extra(cls) -> set[str]:
        return {"secret"}

    @classmethod
    def _build(cls, url: str, options: Mapping[str, Any]) -> AlertWebhook:
        secret = options.get("secret")
        return cls(
            url, str(secret) if secret else None, timeout_s=float(options.get("timeout_s", 2.0))
        )

    def headers(self, msg_id: str, body: bytes) -> dict[str, str]:
        ts = str(int(time.time()))
        out = {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": ts}
        if self._key is not None:
            out["webhook-signature"] = signature(self._key, msg_id, ts, body)
        return out

    def payload(self, alert: Mapping[str, Any]) -> dict[str, Any]:
        return {"type": "cxguard.alert", "timestamp": _when(time.time()), "data": dict(alert)}

    def digest_payload(self, digest: Digest) -> dict[str, Any]:
        return {
            "type": "cxguard.alert_digest",
            "timestamp": _when(time.time()),
            "data": {
                "tenant": digest.tenant,
                "call_id": digest.call_id,
                "alert_ids": list(digest.alert_ids),
                "assertions": dict(digest.assertions),
                "severity": digest.top_severity,
                "message": digest.summary(),
            },
        }


def _mrkdwn(text: str) -> str:
    """Slack's three escapes, after redaction."""
    return pii.redact(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_ICON = {"critical": ":rotating_light:", "major": ":warning:", "minor": ":grey_exclamation:"}


class SlackAlertWebhook(_AlertPost):
    """Slack incoming-webhook messages (also taken by Mattermost, Rocket.Chat, Teams' Slack
    compatible connectors)."""

    name = "slack"
    type_name = "slack"

    def payload(self, alert: Mapping[str, Any]) -> dict[str, Any]:
        v = alert.get("verdict", {})
        severity = str(v.get("severity", ""))
        head = (
            f"{_ICON.get(severity, ':information_source:')} *{_mrkdwn(str(alert.get('kind')))}* "
            f"`{_mrkdwn(str(v.get('assertion_id')))}` ({_mrkdwn(severity)}) on call "
            f"`{_mrkdwn(str(v.get('call_id')))}`, turn {v.get('turn_index')}"
        )
        evidence = _mrkdwn(str(v.get("evidence", "")))
        said = _mrkdwn(str(v.get("text", "")))
        context = (
            f"tenant {_mrkdwn(str(v.get('tenant')))} · {v.get('speaker')} · "
            f"alert {_mrkdwn(str(alert.get('alert_id')))}"
        )
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": head}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Evidence:* {evidence}"}},
        ]
        if said:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"> {said}"}})
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
        return {"text": _mrkdwn(str(alert.get("message", ""))), "blocks": blocks}

    def digest_payload(self, digest: Digest) -> dict[str, Any]:
        text = _mrkdwn(digest.summary())
        ids = _mrkdwn(", ".join(digest.alert_ids))
        return {
            "text": text,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f":mute: {text}"}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": f"alerts {ids}"}]},
            ],
        }
