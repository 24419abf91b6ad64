"""Who may come in, at each door, and who they proved to be.

A *door* is a route that needs a credential: ``/twilio`` (``X-Twilio-Signature``, HMAC-SHA1
of the URL under a tenant's auth token), ``/audiohook`` (``X-API-KEY`` and an RFC 9421
signature under the tenant's client secret, nonce never seen twice by *any* sidecar sharing
the Redis), ``/stream`` (a tenant's bearer token), ``/metrics`` (a bearer token), ``control``
(``POST /calls/{call_id}/events``: a tenant's bearer token, which scopes it to that tenant's
calls). A later door (the console, the control API) is
one more :class:`Door` whose credentials are per tenant, e.g. a :class:`BearerDoor` fed from a
new :data:`~cxguard.runtime.settings.SECRET` field of ``TenantSettings``.

Rules, in order:

- A security header sent twice (``Host``, ``X-Twilio-Signature``, ``X-API-KEY``,
  ``Signature``, ``Signature-Input``, the ``Audiohook-*`` ids, ``Authorization``) is refused
  with 400 and counted (``cxguard_duplicate_security_headers_total``): which copy a proxy, a
  framework or we would read is not defined, so neither is trusted.
- A door with credentials checks them. A door without credentials is open on a loopback bind
  (development: the demo and tests need no config) and closed (403) when ``require_auth`` is
  set or the server listens beyond loopback, unless ``insecure``. With no media credentials at
  all, a non-loopback server refuses to start (:func:`check_exposure`).
- Twilio signs the full ``wss://`` URL it was given. That URL is ``public_url`` + the request
  target; never the peer's ``Host`` header (a signature captured for another host would pass).
  Without ``public_url`` (only possible for settings built in code: the loader requires it
  with a token) it is the listening socket's own address.

Every refusal is an :class:`AuthenticationError` whose ``status`` is the HTTP answer; the
server delays it to :data:`FAILURE_DELAY_S` after the request arrived, without blocking.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from cxguard.errors import AuthenticationError, ConfigError
from cxguard.protocols.audiohook_auth import (
    AudioHookAuthOptions,
    AudioHookCredential,
    CredentialStore,
    replayed,
    verify_request,
)
from cxguard.protocols.twilio_signature import validate_signature
from cxguard.runtime import metrics
from cxguard.runtime.replay import ReplayStore, replay_store
from cxguard.runtime.settings import Settings

FAILURE_DELAY_S: Final = 0.5
"""Every refused request is answered this long after it arrived, whatever was wrong with it."""

SECURITY_HEADERS: Final = frozenset(
    {
        "host",
        "authorization",
        "x-twilio-signature",
        "x-api-key",
        "signature",
        "signature-input",
        "audiohook-organization-id",
        "audiohook-session-id",
        "audiohook-correlation-id",
    }
)


@dataclass(frozen=True)
class Admission:
    """What an accepted upgrade proved. ``tenant`` None: unauthenticated (development)."""

    tenant: str | None = None
    organization_id: str | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class UpgradeRequest:
    """The parts of an HTTP request a door may look at."""

    target: str
    """Path and query, as sent."""
    headers: tuple[tuple[str, str], ...]
    local_address: tuple[str, int] | None = None
    """The listening socket the peer reached (host, port)."""

    @classmethod
    def of(cls, target: str, headers: Any, local_address: Any = None) -> UpgradeRequest:
        """From a websockets ``Headers`` (or any mapping / pairs) and a socket name."""
        raw = headers.raw_items() if hasattr(headers, "raw_items") else _pairs(headers)
        local = None
        if isinstance(local_address, tuple) and len(local_address) >= 2:
            local = (str(local_address[0]), int(local_address[1]))
        return cls(target, tuple((str(n), str(v)) for n, v in raw), local)

    def single(self, name: str) -> str | None:
        """The one value of header ``name`` (case-insensitive); 400 if it was sent twice."""
        values = [v for n, v in self.headers if n.lower() == name]
        if len(values) > 1:
            raise AuthenticationError(f"header {name} sent {len(values)} times", status=400)
        return values[0] if values else None

    def refuse_duplicates(self) -> None:
        counts: dict[str, int] = {}
        for name, _ in self.headers:
            lower = name.lower()
            if lower in SECURITY_HEADERS:
                counts[lower] = counts.get(lower, 0) + 1
        twice = sorted(n for n, c in counts.items() if c > 1)
        for name in twice:
            metrics.DUPLICATE_HEADERS.labels(header=name).inc()
        if twice:
            raise AuthenticationError(f"security header sent twice: {', '.join(twice)}", 400)


def _pairs(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


class Door(Protocol):
    @property
    def has_credentials(self) -> bool: ...

    @property
    def is_open(self) -> bool:
        """No credentials, and admitting requests anyway (development on loopback)."""
        ...

    async def admit(self, request: UpgradeRequest) -> Admission: ...


def _no_credentials(door: str, open_: bool) -> None:
    if not open_:
        raise AuthenticationError(f"no credentials are configured for /{door}", status=403)


class TwilioDoor:
    def __init__(self, tokens: Mapping[str, str], public_url: str | None, open_: bool) -> None:
        self._tokens = {tenant: token for tenant, token in tokens.items() if token}
        self._public_url = public_url.rstrip("/") if public_url else None
        self._open = open_

    @property
    def has_credentials(self) -> bool:
        return bool(self._tokens)

    @property
    def is_open(self) -> bool:
        return self._open and not self.has_credentials

    async def admit(self, request: UpgradeRequest) -> Admission:
        if not self._tokens:
            _no_credentials("twilio", self._open)
            return Admission()
        signature = request.single("x-twilio-signature")
        if not signature:
            raise AuthenticationError("missing X-Twilio-Signature", status=401)
        for url in self.signed_urls(request):
            for tenant, token in self._tokens.items():
                if validate_signature(token, url, {}, signature):
                    return Admission(tenant)
        raise AuthenticationError("X-Twilio-Signature does not match", status=403)

    def signed_urls(self, request: UpgradeRequest) -> list[str]:
        """The URLs a genuine signature for this request was made over."""
        if self._public_url:
            return [self._public_url + request.target]
        if request.local_address is None:
            return []
        host, port = request.local_address
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # Behind a TLS-terminating proxy Twilio signed wss://, a local test ws://.
        return [f"wss://{netloc}{request.target}", f"ws://{netloc}{request.target}"]


class AudioHookDoor:
    def __init__(
        self,
        credentials: CredentialStore,
        replay: ReplayStore,
        open_: bool,
        options: AudioHookAuthOptions | None = None,
    ) -> None:
        self._credentials = credentials
        self._replay = replay
        self._open = open_
        self._options = options or AudioHookAuthOptions()

    @property
    def has_credentials(self) -> bool:
        return len(self._credentials) > 0

    @property
    def is_open(self) -> bool:
        return self._open and not self.has_credentials

    async def admit(self, request: UpgradeRequest) -> Admission:
        if not self.has_credentials:
            _no_credentials("audiohook", self._open)
            return Admission(
                None,
                request.single("audiohook-organization-id"),
                request.single("audiohook-session-id"),
            )
        now = time.time()
        auth = verify_request(
            request.headers,
            method="GET",
            path=request.target,
            authority=request.single("host"),
            now=now,
            credentials=self._credentials,
            options=self._options,
        )
        if auth.nonce is not None and not await self._replay.first_use(
            auth.nonce, auth.nonce_ttl_s(now)
        ):
            raise replayed()
        return Admission(auth.tenant, auth.organization_id, auth.session_id)


class BearerDoor:
    """``Authorization: Bearer TOKEN``; each token admits as its tenant (None: operator).

    With ``basic=True`` the token may also come as the password of ``Basic`` credentials
    (FreeSWITCH ``mod_audio_fork`` can only send those)."""

    def __init__(
        self, name: str, tokens: Mapping[str, str | None], open_: bool, *, basic: bool = False
    ) -> None:
        self._name = name
        self._digests = [(_digest(token), tenant) for token, tenant in tokens.items() if token]
        self._open = open_
        self._basic = basic

    @property
    def has_credentials(self) -> bool:
        return bool(self._digests)

    @property
    def is_open(self) -> bool:
        return self._open and not self.has_credentials

    async def admit(self, request: UpgradeRequest) -> Admission:
        if not self._digests:
            _no_credentials(self._name, self._open)
            return Admission()
        scheme, _, token = (request.single("authorization") or "").strip().partition(" ")
        if self._basic and scheme.lower() == "basic":
            try:
                token = base64.b64decode(token.strip(), validate=True).decode().partition(":")[2]
            except (binascii.Error, ValueError, UnicodeDecodeError):
                raise AuthenticationError("malformed Basic credentials", status=401) from None
        elif scheme.lower() != "bearer":
            raise AuthenticationError("missing bearer token", status=401)
        if not token.strip():
            raise AuthenticationError("missing bearer token", status=401)
        presented = _digest(token.strip())
        found: list[str | None] = []
        for digest, tenant in self._digests:  # every entry, so timing tells nothing
            if hmac.compare_digest(digest, presented):
                found.append(tenant)
        if not found:
            raise AuthenticationError("bearer token does not match", status=403)
        return Admission(found[0])


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposed(settings: Settings) -> bool:
    """Listening beyond loopback without ``insecure``: doors without credentials close."""
    return not is_loopback(settings.host) and not settings.insecure


def check_exposure(settings: Settings) -> None:
    """Refuse to serve a non-loopback address with no media credentials (unless insecure)."""
    if not exposed(settings):
        return
    tenants = settings.tenants
    if any(t.twilio_auth_token or t.audiohook_api_key or t.stream_token for t in tenants):
        return
    raise ConfigError(
        f"refusing to listen on {settings.host}: no Twilio or AudioHook credentials are "
        "configured, so every stream would be refused (configure tenants, or the "
        "CXGUARD_TWILIO_AUTH_TOKEN / CXGUARD_AUDIOHOOK_* variables; or pass --insecure to "
        "accept unsigned streams)"
    )


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        closed = settings.require_auth or exposed(settings)
        credentials = CredentialStore(
            AudioHookCredential.from_base64(
                t.name,
                t.audiohook_api_key,
                t.audiohook_client_secret or "",
                t.audiohook_organization_ids,
            )
            for t in settings.tenants
            if t.audiohook_api_key
        )
        twilio = {t.name: t.twilio_auth_token for t in settings.tenants if t.twilio_auth_token}
        self._replay = replay_store(settings.redis_url)
        metrics_tokens = {settings.metrics_token: None} if settings.metrics_token else {}
        stream_tokens = {t.stream_token: t.name for t in settings.tenants if t.stream_token}
        control_tokens = {t.control_token: t.name for t in settings.tenants if t.control_token}
        self.doors: dict[str, Door] = {
            "twilio": TwilioDoor(twilio, settings.public_url, not closed),
            "audiohook": AudioHookDoor(credentials, self._replay, not closed),
            "stream": BearerDoor("stream", stream_tokens, not closed, basic=True),
            "metrics": BearerDoor("metrics", metrics_tokens, not exposed(settings)),
            "control": BearerDoor("control", control_tokens, not closed),
        }

    @property
    def open_doors(self) -> list[str]:
        """Doors that admit requests without credentials (logged as a warning at start)."""
        return [name for name, door in self.doors.items() if door.is_open]

    async def admit(self, door: str, request: UpgradeRequest) -> Admission:
        request.refuse_duplicates()
        found = self.doors.get(door)
        if found is None:
            raise AuthenticationError(f"no door {door!r}", status=404)
        return await found.admit(request)

    async def close(self) -> None:
        await self._replay.close()
