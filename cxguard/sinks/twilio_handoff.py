"""Hand a live Twilio call to humans: redirect it with Twilio's REST "update a call".

``POST {api_base}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` with the form
field ``Twiml`` replaces the TwiML the call is executing, e.g. with
``<Response><Enqueue>human-agents</Enqueue></Response>`` so the caller waits in the queue
of a human team. Authentication is HTTP basic with ``AccountSid:AuthToken``.

Only requests with ``source == "twilio"`` (and, when ``tenant`` is set, of that tenant)
are acted on; :meth:`TwilioCallRedirect.accepts` says which, and :meth:`send` ignores the
others. Retries follow :func:`cxguard.sinks.webhook.post_with_retries` (connection errors,
timeouts, 5xx and 429). Twilio has no idempotency key for this call: a retry after a lost
response re-sends the same TwiML, which enqueues the caller where they already are.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from cxguard.errors import ConfigError, SinkError
from cxguard.model import HandoffRequest
from cxguard.sinks.messages import OutboxMessage, handoff_from
from cxguard.sinks.webhook import RetryOptions, check_url, make_client, post_with_retries

log = logging.getLogger(__name__)

DEFAULT_TWIML = "<Response><Enqueue>human-agents</Enqueue></Response>"
# Twilio SIDs are two letters and 32 hex digits; anything else must not reach a URL path.
_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")


def check_twiml(twiml: str) -> str:
    """``twiml`` if it is one well-formed ``<Response>`` document, else ConfigError."""
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError as exc:
        raise ConfigError(f"handoff TwiML is not well-formed XML: {exc}") from None
    if root.tag != "Response":
        raise ConfigError(f"handoff TwiML must be a <Response> document, not <{root.tag}>")
    return twiml


class TwilioCallRedirect:
    """As an outbox sink (:meth:`deliver`) it takes the handoffs :meth:`accepts`; each
    outbox attempt is one request (``retries`` 0 from the registry)."""

    name = "twilio"

    def __init__(
        self,
        account_sid: str | None,
        auth_token: str,
        twiml: str = DEFAULT_TWIML,
        api_base: str = "https://api.twilio.com",
        timeout_s: float = 2.0,
        retries: int = 3,
        *,
        backoff_s: float = 0.2,
        tenant: str | None = None,
    ) -> None:
        """``account_sid`` authenticates (with ``auth_token``) and names the account of
        calls whose request carries none; None = use the request's ``account_sid``."""
        if account_sid is not None and not _SID.fullmatch(account_sid):
            raise ConfigError(f"twilio account sid {account_sid!r} is not a Twilio SID")
        if not auth_token:
            raise ConfigError("twilio auth token is empty")
        check_url(api_base, "twilio api base")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._form = twiml
        check_twiml(twiml)
        self._api_base = api_base.rstrip("/")
        self._tenant = tenant
        self._retry = RetryOptions(retries=retries, backoff_s=backoff_s)
        self._client = make_client(timeout_s)

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> TwilioCallRedirect:
        """Registry factory: ``auth_token`` (required), ``account_sid``, ``twiml``,
        ``api_base``, ``timeout_s``, ``tenant``."""
        known = {"auth_token", "account_sid", "twiml", "api_base", "timeout_s", "tenant"}
        unknown = set(options) - known
        if unknown or not options.get("auth_token"):
            raise ConfigError(
                f"sink {name!r} (twilio-redirect): needs 'auth_token'; unknown {sorted(unknown)}"
            )
        sid = options.get("account_sid")
        tenant = options.get("tenant")
        sink = cls(
            None if sid is None else str(sid),
            str(options["auth_token"]),
            str(options.get("twiml", DEFAULT_TWIML)),
            str(options.get("api_base", "https://api.twilio.com")),
            float(options.get("timeout_s", 2.0)),
            retries=0,
            tenant=None if tenant is None else str(tenant),
        )
        sink.name = name
        return sink

    def accepts(self, request: HandoffRequest | OutboxMessage) -> bool:
        if isinstance(request, OutboxMessage):
            if request.kind != "handoff":
                return False
            request = handoff_from(request)
        return request.source == "twilio" and self._tenant in (None, request.tenant)

    async def deliver(self, message: OutboxMessage) -> None:
        await self.send(handoff_from(message))

    def call_url(self, request: HandoffRequest) -> str:
        account = request.account_sid or self._account_sid
        if not account or not _SID.fullmatch(account):
            raise SinkError(
                f"call {request.call_id!r}: no valid Twilio account sid "
                f"(request has {request.account_sid!r}, none configured)"
            )
        if not _SID.fullmatch(request.call_id):
            raise SinkError(f"{request.call_id!r} is not a Twilio CallSid")
        return (
            f"{self._api_base}/2010-04-01/Accounts/{quote(account)}"
            f"/Calls/{quote(request.call_id)}.json"
        )

    async def send(self, request: HandoffRequest) -> None:
        if not self.accepts(request):
            log.debug(
                "twilio: ignoring handoff of %s call %s (tenant %s)",
                request.source,
                request.call_id,
                request.tenant,
            )
            return
        url = self.call_url(request)
        # A parent account's credentials may update its subaccounts' calls, so the auth
        # user stays the configured account even when the call names another.
        user = self._account_sid or request.account_sid
        body = urlencode({"Twiml": self._form}).encode("ascii")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        await post_with_retries(
            self._client,
            url,
            target=f"twilio call {request.call_id}",
            options=self._retry,
            headers=lambda: headers,
            content=body,
            auth=httpx.BasicAuth(user, self._auth_token),
        )

    async def close(self) -> None:
        await self._client.aclose()
