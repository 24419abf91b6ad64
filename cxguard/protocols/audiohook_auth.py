"""AudioHook connection authentication: ``X-API-KEY`` plus an RFC 9421 HMAC signature.

Genesys opens the WebSocket with ``X-API-KEY`` and, when the integration has a client
secret, ``Signature-Input``/``Signature`` (RFC 9421, ``alg="hmac-sha256"``, keyed by the
base64-decoded client secret, ``keyid`` = the API key). The reference server
(``app/src/authenticator.ts``, ``httpsignature/signature-verifier.ts``) requires these
covered components, and so do we: ``@request-target``, ``@authority``,
``audiohook-organization-id``, ``audiohook-session-id``, ``audiohook-correlation-id``,
``x-api-key``; a ``created`` no older than 10 s and not in the future (3 s clock skew), an
``expires`` not passed, and a ``nonce`` of at least 22 characters that is never seen twice.

Pure: the caller passes the request's headers, method, target, authority, the clock and a
nonce store (:func:`authenticate_request`), or records the nonce itself (:func:`verify_request`
returns it with the time after which the signature is refused anyway, so an asynchronous or
shared store, e.g. Redis ``SET NX`` with that TTL, can do it).

Failures raise :class:`AuthenticationError` (``status`` 401, or 403 for an organization the
credential is not allowed); the message is for logs, not for the peer. As
the reference does, an unknown API key still costs one HMAC, so a signed request's reply
time does not tell whether the key exists; add a fixed delay on failure at the server too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import http_sf
from http_sf.innerlist import ser_innerlist
from http_sf.item import ser_item
from http_sf.types import InnerListType, ItemType, ParamsType

from cxguard.errors import AuthenticationError, ConfigError

REQUIRED_COMPONENTS: Final[tuple[str, ...]] = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
ALGORITHM: Final = "hmac-sha256"
_SIGNATURE_PARAMS: Final = frozenset({"alg", "created", "expires", "keyid", "nonce", "tag"})
_OBS_FOLD = re.compile(r"[ \t]*\r\n[ \t]+")

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


@dataclass(frozen=True)
class AudioHookCredential:
    tenant: str
    api_key: str
    client_secret: bytes = field(default=b"", repr=False)
    """The HMAC key: the base64-decoded client secret. Empty: the integration signs nothing."""
    organization_ids: frozenset[str] = frozenset()
    """Genesys organizations allowed to use this key; empty allows any."""

    @classmethod
    def from_base64(
        cls, tenant: str, api_key: str, client_secret: str, organization_ids: Iterable[str] = ()
    ) -> AudioHookCredential:
        """``client_secret`` as configured in Genesys (base64 text)."""
        try:
            key = base64.b64decode(client_secret, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"client secret of tenant {tenant!r} is not base64: {exc}") from None
        return cls(tenant, api_key, key, frozenset(o.lower() for o in organization_ids))


class CredentialLookup(Protocol):
    def lookup(self, api_key: str) -> AudioHookCredential | None: ...


class CredentialStore:
    """Per-tenant credentials, found by API key."""

    def __init__(self, credentials: Iterable[AudioHookCredential]) -> None:
        self._by_key: dict[str, AudioHookCredential] = {}
        for credential in credentials:
            if credential.api_key in self._by_key:
                raise ConfigError(f"API key of tenant {credential.tenant!r} is not unique")
            self._by_key[credential.api_key] = credential

    def lookup(self, api_key: str) -> AudioHookCredential | None:
        return self._by_key.get(api_key)

    def __len__(self) -> int:
        return len(self._by_key)


class NonceStore(Protocol):
    def remember(self, nonce: str, now: float, ttl_s: float) -> bool:
        """Record ``nonce`` until ``now + ttl_s``; False if it is already recorded."""
        ...


class TtlNonceStore:
    """In-memory nonce store, bounded: beyond ``max_entries`` the oldest nonce is forgotten.

    Only nonces of verified signatures are stored, so filling it takes valid credentials."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max_entries = max_entries
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def remember(self, nonce: str, now: float, ttl_s: float) -> bool:
        while self._expiry and next(iter(self._expiry.values())) <= now:
            self._expiry.popitem(last=False)
        expiry = self._expiry.get(nonce)
        if expiry is not None and expiry > now:
            return False
        while len(self._expiry) >= self._max_entries:
            self._expiry.popitem(last=False)
        self._expiry[nonce] = now + ttl_s
        return True

    def __len__(self) -> int:
        return len(self._expiry)


@dataclass(frozen=True)
class AudioHookAuthOptions:
    max_signature_age_s: float = 10.0
    clock_skew_s: float = 3.0
    min_nonce_length: int = 22
    require_signature: bool = True
    """False accepts unsigned requests for credentials without a client secret."""
    required_components: tuple[str, ...] = REQUIRED_COMPONENTS


@dataclass(frozen=True)
class AudioHookAuth:
    """Who connected: pass ``organization_id``/``session_id`` on to the session."""

    credential: AudioHookCredential
    organization_id: str
    session_id: str
    correlation_id: str
    signed: bool
    nonce: str | None = field(default=None, compare=False)
    """The signature's nonce (None: unsigned). Not yet recorded by :func:`verify_request`."""
    valid_until: float = field(default=0.0, compare=False)
    """Unix seconds after which this signature is refused anyway: how long to keep the nonce."""

    @property
    def tenant(self) -> str:
        return self.credential.tenant

    def nonce_ttl_s(self, now: float) -> float:
        """How long a replay store must keep :attr:`nonce` (at least one second)."""
        return max(1.0, self.valid_until - now)


def _deny(message: str, status: int = 401) -> AuthenticationError:
    return AuthenticationError(message, status)


def _fields(headers: Headers) -> dict[str, str]:
    # RFC 9421 §2.1: lowercase names, trimmed values, repeated fields joined by ", ".
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name.lower(), []).append(_OBS_FOLD.sub(" ", value).strip())
    return {name: ", ".join(values) for name, values in fields.items()}


def _component_values(
    fields: Mapping[str, str], method: str, path: str, authority: str | None
) -> dict[str, str]:
    target_path, sep, query = path.partition("?")
    derived = {
        "@method": method.upper(),
        "@request-target": path,
        "@path": target_path or "/",
        "@query": f"?{query}" if sep else "?",
    }
    host = authority if authority is not None else fields.get("host")
    if host:
        derived["@authority"] = host.lower()
    return derived


def _signature_base(names: Sequence[str], values: Mapping[str, str], params: str) -> bytes:
    lines = [f"{ser_item(name)}: {values[name]}" for name in names]
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode()


def authenticate_request(
    headers: Headers,
    *,
    method: str,
    path: str,
    authority: str | None,
    now: float,
    credentials: CredentialLookup,
    nonces: NonceStore,
    options: AudioHookAuthOptions = AudioHookAuthOptions(),
) -> AudioHookAuth:
    """Check one WebSocket upgrade request; ``path`` is the request target (path and query),
    ``authority`` the Host (None: read the ``Host`` header), ``now`` Unix seconds. A signed
    request's nonce is recorded in ``nonces``; one seen before is refused."""
    auth = verify_request(
        headers,
        method=method,
        path=path,
        authority=authority,
        now=now,
        credentials=credentials,
        options=options,
    )
    if auth.nonce is not None and not nonces.remember(auth.nonce, now, auth.nonce_ttl_s(now)):
        raise replayed()
    return auth


def replayed() -> AuthenticationError:
    """The refusal of a signature whose nonce was seen before."""
    return _deny("signature nonce was already used")


def verify_request(
    headers: Headers,
    *,
    method: str,
    path: str,
    authority: str | None,
    now: float,
    credentials: CredentialLookup,
    options: AudioHookAuthOptions = AudioHookAuthOptions(),
) -> AudioHookAuth:
    """:func:`authenticate_request` without the replay check: the caller must record
    ``nonce`` for :meth:`AudioHookAuth.nonce_ttl_s` and refuse the request if it was seen."""
    fields = _fields(headers)
    api_key = fields.get("x-api-key")
    if not api_key:
        raise _deny("missing X-API-KEY header")
    organization_id = fields.get("audiohook-organization-id", "")
    session_id = fields.get("audiohook-session-id", "")
    if not organization_id or not session_id:
        raise _deny("missing Audiohook-Organization-Id or Audiohook-Session-Id header")
    credential = credentials.lookup(api_key)
    signed = "signature-input" in fields or "signature" in fields
    nonce: str | None = None
    valid_until = 0.0
    if not signed:
        if credential is None:
            raise _deny("unknown API key")
        if credential.client_secret or options.require_signature:
            raise _deny("request is not signed")
    else:
        credential, nonce, valid_until = _verify(
            fields, api_key, credential, method, path, authority, now, options
        )
    if credential.organization_ids and organization_id.lower() not in credential.organization_ids:
        raise _deny("organization not allowed for this API key", 403)
    return AudioHookAuth(
        credential,
        organization_id,
        session_id,
        fields.get("audiohook-correlation-id", ""),
        signed,
        nonce,
        valid_until,
    )


def _verify(
    fields: Mapping[str, str],
    api_key: str,
    credential: AudioHookCredential | None,
    method: str,
    path: str,
    authority: str | None,
    now: float,
    options: AudioHookAuthOptions,
) -> tuple[AudioHookCredential, str, float]:
    """The credential, the nonce and the time after which the signature is refused."""
    try:
        inputs = http_sf.parse(fields.get("signature-input", "").encode(), tltype="dictionary")
        signatures = http_sf.parse(fields.get("signature", "").encode(), tltype="dictionary")
    except (http_sf.StructuredFieldError, UnicodeError, ValueError):
        raise _deny("Signature-Input or Signature header is malformed") from None
    if not isinstance(inputs, dict) or not isinstance(signatures, dict) or not inputs:
        raise _deny("Signature-Input and Signature headers are both required")
    label, covered = next(iter(inputs.items()))  # as the reference: the first signature counts
    signature = signatures.get(label)
    if not (isinstance(signature, tuple) and isinstance(signature[0], bytes) and not signature[1]):
        raise _deny(f"no byte-sequence signature labelled {label!r:.40}")
    if not (isinstance(covered, tuple) and isinstance(covered[0], list)):
        raise _deny("Signature-Input member is not an inner list")
    items: list[ItemType] = covered[0]
    params = covered[1]

    names: list[str] = []
    for item in items:
        name = item[0] if isinstance(item, tuple) else item
        if not isinstance(name, str) or (isinstance(item, tuple) and item[1]):
            raise _deny("covered components must be plain strings without parameters")
        if name != name.lower() or name in names or name == "@signature-params":
            raise _deny(f"invalid covered component {name!r:.40}")
        names.append(name)
    if set(params) - _SIGNATURE_PARAMS:
        raise _deny("unknown signature parameter")
    created, expires = params.get("created"), params.get("expires")
    keyid, nonce, alg = params.get("keyid"), params.get("nonce"), params.get("alg", ALGORITHM)
    if alg != ALGORITHM:
        raise _deny(f"signature algorithm {alg!r:.40} is not supported")
    if keyid != api_key:
        raise _deny("signature keyid does not match X-API-KEY")
    if type(created) is not int or (expires is not None and type(expires) is not int):
        raise _deny("signature lacks an integer 'created' (or has a non-integer 'expires')")
    skew = options.clock_skew_s
    if created > now + skew:
        raise _deny("signature 'created' is in the future")
    if now > created + options.max_signature_age_s + skew:
        raise _deny("signature is too old")
    if expires is not None and now > expires + skew:
        raise _deny("signature has expired")
    if not isinstance(nonce, str) or len(nonce) < options.min_nonce_length:
        raise _deny("signature nonce missing or too short")
    missing = [c for c in options.required_components if c not in names]
    if missing:
        raise _deny(f"signature does not cover {', '.join(missing)}")

    values = _component_values(fields, method, path, authority)
    for name in names:
        if name.startswith("@"):
            if name not in values:
                raise _deny(f"component {name!r:.40} is not supported or has no value")
        elif name in fields:
            values[name] = fields[name]
        else:
            raise _deny(f"covered header {name!r:.40} is absent")
    inner: InnerListType = (items, params)
    base = _signature_base(names, values, ser_innerlist(inner))
    if credential is not None and options.require_signature and not credential.client_secret:
        raise _deny("credential has no client secret to check the signature with")
    # An unknown key is checked against a random one, so both paths take the same time.
    key = credential.client_secret if credential is not None else secrets.token_bytes(32)
    expected = hmac.new(key, base, hashlib.sha256).digest()
    if credential is None:
        raise _deny("unknown API key")
    if not hmac.compare_digest(expected, signature[0]):
        raise _deny("signature does not match")
    # The caller records the nonce only now, so unsigned junk cannot fill the store; it is
    # kept until the signature would be refused as too old or expired anyway.
    valid_until = created + options.max_signature_age_s + skew
    if expires is not None:
        valid_until = min(valid_until, expires + skew)
    return credential, nonce, float(valid_until)


def sign_request(
    *,
    path: str,
    authority: str,
    api_key: str,
    client_secret: bytes,
    organization_id: str,
    session_id: str,
    correlation_id: str,
    created: int | None = None,
    expires_in_s: int = 30,
    nonce: str | None = None,
    components: Sequence[str] = REQUIRED_COMPONENTS,
    method: str = "GET",
    label: str = "sig1",
    extra_headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers Genesys sends: the AudioHook ids, ``X-API-KEY`` and, when there is a
    secret, ``Signature-Input``/``Signature`` in the reference client's parameter order.
    ``extra_headers`` are sent too, and may be named in ``components``."""
    headers = {
        "Audiohook-Organization-Id": organization_id,
        "Audiohook-Session-Id": session_id,
        "Audiohook-Correlation-Id": correlation_id,
        "X-API-KEY": api_key,
        **(extra_headers or {}),
    }
    if not client_secret:
        return headers
    created = int(time.time()) if created is None else created
    params: ParamsType = {
        "keyid": api_key,
        "nonce": nonce if nonce is not None else base64.b64encode(secrets.token_bytes(18)).decode(),
        "alg": ALGORITHM,
        "created": created,
        "expires": created + expires_in_s,
    }
    inner: InnerListType = ([(name, {}) for name in components], params)
    fields = _fields(headers.items())
    values = _component_values(fields, method, path, authority) | fields
    base = _signature_base(list(components), values, ser_innerlist(inner))
    digest = hmac.new(client_secret, base, hashlib.sha256).digest()
    headers["Signature-Input"] = http_sf.ser({label: inner})
    headers["Signature"] = http_sf.ser({label: (digest, {})})
    return headers


__all__ = [
    "REQUIRED_COMPONENTS",
    "AudioHookAuth",
    "AudioHookAuthOptions",
    "AudioHookCredential",
    "AuthenticationError",
    "CredentialLookup",
    "CredentialStore",
    "NonceStore",
    "TtlNonceStore",
    "authenticate_request",
    "replayed",
    "sign_request",
    "verify_request",
]
