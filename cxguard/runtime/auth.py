"""Checks a websocket upgrade before any audio is read; returns the tenant it proves.

Credentials are per tenant. With none configured and ``require_auth`` off, upgrades are
accepted unsigned (development); the server says so loudly at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from cxguard.errors import AuthenticationError
from cxguard.protocols.twilio_signature import validate_signature
from cxguard.runtime.settings import Settings

log = logging.getLogger(__name__)


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._twilio = {t.name: t.twilio_auth_token for t in settings.tenants
                        if t.twilio_auth_token}

    @property
    def open_protocols(self) -> list[str]:
        """Protocols accepted without credentials (logged as a warning by the server)."""
        if self._settings.require_auth:
            return []
        return ["twilio"] if not self._twilio else []

    def check(self, protocol: str, path: str, headers: Mapping[str, str]) -> str | None:
        if protocol == "twilio":
            return self._check_twilio(path, headers)
        raise AuthenticationError(f"unknown protocol {protocol!r}", status=404)

    def _check_twilio(self, path: str, headers: Mapping[str, str]) -> str | None:
        if not self._twilio:
            if self._settings.require_auth:
                raise AuthenticationError("no Twilio credentials configured", status=403)
            return None
        signature = headers.get("X-Twilio-Signature")
        if not signature:
            raise AuthenticationError("missing X-Twilio-Signature", status=401)
        for url in self._candidate_urls(path, headers):
            for tenant, token in self._twilio.items():
                if token and validate_signature(token, url, {}, signature):
                    return tenant
        raise AuthenticationError("X-Twilio-Signature does not match", status=403)

    def _candidate_urls(self, path: str, headers: Mapping[str, str]) -> list[str]:
        if self._settings.public_url:
            return [self._settings.public_url.rstrip("/") + path]
        host = headers.get("Host", "")
        # Behind a TLS-terminating proxy Twilio signed wss://, a local test ws://.
        return [f"wss://{host}{path}", f"ws://{host}{path}"]
