"""Checks a websocket upgrade before any audio is read, and says who it proved to be.

Credentials are per tenant (Twilio auth token; AudioHook API key + base64 client secret).
With none configured for a protocol and ``require_auth`` off, its upgrades are accepted
unsigned (development); the server warns about it at start-up.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cxguard.errors import AuthenticationError
from cxguard.protocols.audiohook_auth import (
    AudioHookCredential,
    CredentialStore,
    TtlNonceStore,
    authenticate_request,
)
from cxguard.protocols.twilio_signature import validate_signature
from cxguard.runtime.settings import Settings


@dataclass(frozen=True)
class Admission:
    """What an accepted upgrade proved. ``tenant`` None: unauthenticated (development)."""

    tenant: str | None = None
    organization_id: str | None = None
    session_id: str | None = None


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._twilio = {
            t.name: t.twilio_auth_token for t in settings.tenants if t.twilio_auth_token
        }
        creds = [
            AudioHookCredential(t.name, t.audiohook_api_key, t.client_secret_bytes() or b"")
            for t in settings.tenants
            if t.audiohook_api_key
        ]
        self._audiohook = CredentialStore(creds)
        self._nonces = TtlNonceStore()
        self._stream = {t.name: t.stream_token for t in settings.tenants if t.stream_token}

    @property
    def open_protocols(self) -> list[str]:
        """Protocols accepted without credentials (logged as a warning by the server)."""
        if self._settings.require_auth:
            return []
        open_ = [] if self._twilio else ["twilio"]
        open_ += [] if self._stream else ["stream"]
        return open_ + ([] if len(self._audiohook) else ["audiohook"])

    def check(self, protocol: str, path: str, headers: Mapping[str, str]) -> Admission:
        if protocol == "twilio":
            return Admission(self._check_twilio(path, headers))
        if protocol == "audiohook":
            return self._check_audiohook(path, headers)
        if protocol == "stream":
            return Admission(self._check_stream(headers))
        raise AuthenticationError(f"unknown protocol {protocol!r}", status=404)

    def _check_audiohook(self, path: str, headers: Mapping[str, str]) -> Admission:
        if not len(self._audiohook):
            if self._settings.require_auth:
                raise AuthenticationError("no AudioHook credentials configured", status=403)
            return Admission(
                None, headers.get("Audiohook-Organization-Id"), headers.get("Audiohook-Session-Id")
            )
        items = headers.raw_items() if hasattr(headers, "raw_items") else headers.items()
        auth = authenticate_request(
            list(items),
            method="GET",
            path=path,
            authority=headers.get("Host"),
            now=time.time(),
            credentials=self._audiohook,
            nonces=self._nonces,
        )
        return Admission(auth.tenant, auth.organization_id, auth.session_id)

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

    def _check_stream(self, headers: Mapping[str, str]) -> str | None:
        """``Authorization: Bearer <token>`` (Vonage's custom authorization) or ``Basic``
        with the token as password (mod_audio_fork); the matching tenant is proven."""
        if not self._stream:
            if self._settings.require_auth:
                raise AuthenticationError("no stream tokens configured", status=403)
            return None
        values = headers.get_all("Authorization") if hasattr(headers, "get_all") else []
        if len(values) != 1:
            raise AuthenticationError("one Authorization header is required", status=401)
        scheme, _, credential = values[0].strip().partition(" ")
        token = credential.strip()
        if scheme.lower() == "basic":
            try:
                token = base64.b64decode(token, validate=True).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                raise AuthenticationError("malformed Basic credentials", status=401) from None
        elif scheme.lower() != "bearer":
            raise AuthenticationError("Authorization must be Bearer or Basic", status=401)
        matched = None
        for tenant, expected in self._stream.items():
            if hmac.compare_digest(token.encode(), expected.encode()):
                matched = tenant  # no early exit: the time taken does not tell which
        if matched is None:
            raise AuthenticationError("stream token does not match", status=403)
        return matched

    def _candidate_urls(self, path: str, headers: Mapping[str, str]) -> list[str]:
        if self._settings.public_url:
            return [self._settings.public_url.rstrip("/") + path]
        host = headers.get("Host", "")
        # Behind a TLS-terminating proxy Twilio signed wss://, a local test ws://.
        return [f"wss://{host}{path}", f"ws://{host}{path}"]
