"""AudioHook upgrade authentication: X-API-KEY and RFC 9421 HMAC signatures."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from cxguard.errors import AudioHookProtocolError, AuthenticationError, ConfigError
from cxguard.protocols.audiohook import AudioHookOptions, AudioHookSession
from cxguard.protocols.audiohook_auth import (
    REQUIRED_COMPONENTS,
    AudioHookAuth,
    AudioHookAuthOptions,
    AudioHookCredential,
    CredentialStore,
    TtlNonceStore,
    authenticate_request,
    sign_request,
)
from cxguard.simulate.audiohook import open_message

# "Example 1" of the Genesys AudioHook protocol documentation (HTTP message signatures); the
# reference implementation's tests use the same values.
DOC_API_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
DOC_SECRET = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
DOC_TARGET = "/api/v1/voicebiometrics/ws"
DOC_CREATED = 1641013200
DOC_HEADERS = {
    "Host": "audiohook.example.com",
    "Audiohook-Organization-Id": "d7934305-0972-4844-938e-9060eef73d05",
    "Audiohook-Session-Id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "Audiohook-Correlation-Id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "X-API-KEY": DOC_API_KEY,
    "Signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
    "Signature-Input": (
        'sig1=("@request-target" "@authority" "audiohook-organization-id" '
        '"audiohook-session-id" "audiohook-correlation-id" "x-api-key");'
        'keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";'
        'alg="hmac-sha256";created=1641013200;expires=3282026430'
    ),
}
ORG = DOC_HEADERS["Audiohook-Organization-Id"]
DOC_CREDENTIAL = AudioHookCredential.from_base64("acme", DOC_API_KEY, DOC_SECRET)
OTHER = AudioHookCredential("globex", "other-key", b"another secret")
STORE = CredentialStore([DOC_CREDENTIAL, OTHER])
DEFAULT_OPTIONS = AudioHookAuthOptions()


def check(
    headers: Any = DOC_HEADERS,
    *,
    now: float = DOC_CREATED + 5,
    path: str = DOC_TARGET,
    authority: str | None = None,
    store: CredentialStore = STORE,
    nonces: TtlNonceStore | None = None,
    options: AudioHookAuthOptions = DEFAULT_OPTIONS,
) -> AudioHookAuth:
    return authenticate_request(
        headers,
        method="GET",
        path=path,
        authority=authority,
        now=now,
        credentials=store,
        nonces=nonces if nonces is not None else TtlNonceStore(),
        options=options,
    )


def signed(
    *,
    credential: AudioHookCredential = DOC_CREDENTIAL,
    created: int = DOC_CREATED,
    nonce: str = "VGhpc0lzQVVuaXF1ZU5vbmNl",
    path: str = DOC_TARGET,
    **kwargs: Any,
) -> dict[str, str]:
    headers = sign_request(
        path=path,
        authority="audiohook.example.com",
        api_key=credential.api_key,
        client_secret=credential.client_secret,
        organization_id=ORG,
        session_id=DOC_HEADERS["Audiohook-Session-Id"],
        correlation_id=DOC_HEADERS["Audiohook-Correlation-Id"],
        created=created,
        nonce=nonce,
        **kwargs,
    )
    return {"Host": "audiohook.example.com"} | headers


def denied(fragment: str, status: int = 401, **kwargs: Any) -> None:
    headers = kwargs.pop("headers", DOC_HEADERS)
    with pytest.raises(AuthenticationError) as info:
        check(headers, **kwargs)
    assert info.value.status == status
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- good requests


def test_genesys_documentation_example_verifies() -> None:
    auth = check()
    assert auth == AudioHookAuth(
        DOC_CREDENTIAL,
        ORG,
        DOC_HEADERS["Audiohook-Session-Id"],
        DOC_HEADERS["Audiohook-Correlation-Id"],
        signed=True,
    )
    assert auth.tenant == "acme"
    assert check(authority="AudioHook.Example.COM").signed  # authority compares lowercased


def test_signer_reproduces_the_documentation_example() -> None:
    headers = signed(expires_in_s=3282026430 - DOC_CREATED)
    assert headers == DOC_HEADERS


def test_header_names_are_case_insensitive_and_pairs_are_accepted() -> None:
    pairs = [(name.upper(), value) for name, value in reversed(DOC_HEADERS.items())]
    assert check(pairs).signed


def test_repeated_fields_are_combined_before_signing() -> None:
    components = (*REQUIRED_COMPONENTS, "x-trace")
    headers = signed(components=components, extra_headers={"X-Trace": "a, b"})
    pairs = [(k, v) for k, v in headers.items() if k != "X-Trace"]
    assert check([*pairs, ("X-Trace", " a "), ("x-trace", "b")]).signed
    denied("does not match", headers=[*pairs, ("X-Trace", "b"), ("x-trace", "a")])


def test_uncovered_fields_do_not_matter() -> None:
    assert check([*DOC_HEADERS.items(), ("X-Extra", "1"), ("x-extra", "2")]).signed


def test_other_derived_components_are_supported() -> None:
    path = "/audiohook/ws?tenant=acme"
    components = (*REQUIRED_COMPONENTS, "@method", "@path", "@query")
    assert check(signed(path=path, components=components), path=path, now=DOC_CREATED).signed


def test_default_nonce_is_long_enough_and_fresh() -> None:
    one = sign_request(
        path="/",
        authority="a",
        api_key="k",
        client_secret=b"s",
        organization_id=ORG,
        session_id="s",
        correlation_id="c",
    )
    two = sign_request(
        path="/",
        authority="a",
        api_key="k",
        client_secret=b"s",
        organization_id=ORG,
        session_id="s",
        correlation_id="c",
    )
    assert one["Signature-Input"] != two["Signature-Input"]
    nonce = one["Signature-Input"].split('nonce="')[1].split('"')[0]
    assert len(nonce) == 24


def test_unsigned_request_without_a_secret_only_when_allowed() -> None:
    keyless = AudioHookCredential("initech", "plain-key")
    store = CredentialStore([keyless])
    headers = sign_request(
        path="/",
        authority="a",
        api_key="plain-key",
        client_secret=b"",
        organization_id=ORG,
        session_id="s",
        correlation_id="c",
    )
    assert "Signature" not in headers
    denied("not signed", headers=headers, store=store)
    relaxed = AudioHookAuthOptions(require_signature=False)
    auth = check(headers, store=store, options=relaxed)
    assert (auth.tenant, auth.signed) == ("initech", False)


# --------------------------------------------------------------------------- bad requests


def test_bad_signature() -> None:
    raw = base64.b64decode(DOC_HEADERS["Signature"][6:-1])
    flipped = bytes([raw[0] ^ 1]) + raw[1:]
    headers = DOC_HEADERS | {"Signature": f"sig1=:{base64.b64encode(flipped).decode()}:"}
    denied("signature does not match", headers=headers)


@pytest.mark.parametrize(
    "change",
    [
        {"Audiohook-Session-Id": "00000000-0000-0000-0000-000000000000"},
        {"Audiohook-Correlation-Id": "e160e428-53e2-487c-977d-96989bf5c99e"},
        {"Host": "evil.example.com"},
    ],
)
def test_tampered_covered_fields(change: dict[str, str]) -> None:
    denied("signature does not match", headers=DOC_HEADERS | change)


def test_wrong_target_or_secret() -> None:
    denied("signature does not match", path="/api/v1/other")
    wrong = AudioHookCredential("acme", DOC_API_KEY, b"not the secret")
    denied("signature does not match", store=CredentialStore([wrong]))


def test_expired_and_too_old() -> None:
    assert check(now=DOC_CREATED + 13).signed  # 10 s of age plus 3 s of skew
    denied("too old", now=DOC_CREATED + 14)
    headers = signed(expires_in_s=2)
    assert check(headers, now=DOC_CREATED + 5).signed  # within skew of expiry
    denied("expired", headers=headers, now=DOC_CREATED + 6)


def test_created_in_the_future() -> None:
    assert check(now=DOC_CREATED - 3).signed
    denied("in the future", now=DOC_CREATED - 4)


def test_replayed_nonce() -> None:
    nonces = TtlNonceStore()
    assert check(nonces=nonces).signed
    denied("already used", nonces=nonces, now=DOC_CREATED + 6)
    assert check(signed(nonce="A-different-nonce-of-24c"), nonces=nonces).signed


def test_failed_signatures_do_not_consume_nonces() -> None:
    nonces = TtlNonceStore()
    denied("does not match", nonces=nonces, path="/wrong")
    assert len(nonces) == 0
    assert check(nonces=nonces).signed


def test_wrong_organization_for_the_key_is_forbidden() -> None:
    allowed = AudioHookCredential.from_base64(
        "acme", DOC_API_KEY, DOC_SECRET, ["6bd28c51-2d62-4fc6-8f5d-0d1bd01ab4a1"]
    )
    denied("organization not allowed", 403, store=CredentialStore([allowed]))
    allowed = AudioHookCredential.from_base64("acme", DOC_API_KEY, DOC_SECRET, [ORG.upper()])
    assert check(store=CredentialStore([allowed])).signed


def test_wrong_organization_in_open_is_refused_by_the_session() -> None:
    auth = check()
    session = AudioHookSession(
        AudioHookOptions(tenant=auth.tenant),
        organization_id=auth.organization_id,
        session_id=auth.session_id,
    )
    other_org = "6bd28c51-2d62-4fc6-8f5d-0d1bd01ab4a1"
    session.receive_text(
        open_message(
            auth.session_id,
            organization_id=other_org,
            conversation_id="090eaa2f-72fa-480a-83e0-8667ff89c0ec",
        )
    )
    assert isinstance(session.error, AudioHookProtocolError) and session.error.code == 401
    assert '"reason":"unauthorized"' in session.data_to_send()[0]


@pytest.mark.parametrize("missing", ["x-api-key", "@authority", "audiohook-session-id"])
def test_missing_components(missing: str) -> None:
    components = tuple(c for c in REQUIRED_COMPONENTS if c != missing)
    denied(f"does not cover {missing}", headers=signed(components=components))


def test_required_components_are_configurable() -> None:
    headers = signed(components=("@request-target", "x-api-key"))
    options = AudioHookAuthOptions(required_components=("x-api-key",))
    assert check(headers, options=options).signed


def test_wrong_key_id() -> None:
    headers = DOC_HEADERS | {
        "Signature-Input": DOC_HEADERS["Signature-Input"].replace("SGV", "XGV")
    }
    denied("keyid does not match", headers=headers)


def test_missing_api_key() -> None:
    headers = {k: v for k, v in DOC_HEADERS.items() if k != "X-API-KEY"}
    denied("missing X-API-KEY", headers=headers)


def test_unknown_api_key() -> None:
    stranger = AudioHookCredential("nobody", "unknown-key", b"whatever")
    denied("unknown API key", headers=signed(credential=stranger))
    unsigned = {k: v for k, v in signed(credential=stranger).items() if not k.startswith("Sig")}
    denied("unknown API key", headers=unsigned)


def test_unsigned_request_for_a_key_with_a_secret() -> None:
    headers = {k: v for k, v in DOC_HEADERS.items() if not k.startswith("Signature")}
    denied("not signed", headers=headers)


def test_required_signature_needs_a_secret_on_our_side() -> None:
    keyless = AudioHookCredential("acme", DOC_API_KEY)
    denied("no client secret", store=CredentialStore([keyless]))


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"Signature-Input": "sig1=("}, "malformed"),
        ({"Signature": "sig1=:%%%:"}, "malformed"),
        ({"Signature-Input": 'sig1=("x-api-key")ééé'}, "malformed"),
        ({"Signature": "sig2=:AAAA:"}, "no byte-sequence signature"),
        ({"Signature": 'sig1="text"'}, "no byte-sequence signature"),
        ({"Signature-Input": "sig1=1"}, "not an inner list"),
        ({"Signature-Input": ""}, "both required"),
    ],
)
def test_malformed_signature_headers(change: dict[str, str], fragment: str) -> None:
    denied(fragment, headers=DOC_HEADERS | change)


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ('"x-api-key")', '"x-api-key";sf)', "without parameters"),
        ('"x-api-key")', '"X-API-KEY")', "invalid covered component"),
        ('"x-api-key")', '"x-api-key" "x-api-key")', "invalid covered component"),
        ('"x-api-key")', '"x-api-key" "@signature-params")', "invalid covered component"),
        ('"x-api-key")', '"x-api-key" "@target-uri")', "not supported"),
        ('"x-api-key")', '"x-api-key" "x-absent")', "'x-absent' is absent"),
        ('"x-api-key")', '"x-api-key" x-token)', "plain strings"),
        ('alg="hmac-sha256"', 'alg="rsa-pss-sha512"', "not supported"),
        ('alg="hmac-sha256"', 'alg="hmac-sha256";color="red"', "unknown signature parameter"),
        ("created=1641013200", "created=1641013200.5", "integer 'created'"),
        (";created=1641013200", "", "integer 'created'"),
        ("expires=3282026430", "expires=?1", "integer 'created'"),
        ('nonce="VGhpc0lzQVVuaXF1ZU5vbmNl"', 'nonce="short"', "nonce missing or too short"),
        ('nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";', "", "nonce missing or too short"),
    ],
)
def test_bad_signature_input(old: str, new: str, fragment: str) -> None:
    headers = DOC_HEADERS | {"Signature-Input": DOC_HEADERS["Signature-Input"].replace(old, new)}
    assert headers["Signature-Input"] != DOC_HEADERS["Signature-Input"]
    denied(fragment, headers=headers)


def test_missing_audiohook_ids() -> None:
    headers = {k: v for k, v in DOC_HEADERS.items() if k != "Audiohook-Organization-Id"}
    denied("missing Audiohook-Organization-Id", headers=headers)


def test_missing_authority() -> None:
    headers = {k: v for k, v in DOC_HEADERS.items() if k != "Host"}
    denied("'@authority' is not supported or has no value", headers=headers)


# --------------------------------------------------------------------------- stores


def test_nonce_store_forgets_after_the_ttl_and_stays_bounded() -> None:
    store = TtlNonceStore(max_entries=3)
    assert store.remember("a", now=100.0, ttl_s=10)
    assert not store.remember("a", now=109.9, ttl_s=10)
    assert store.remember("a", now=110.0, ttl_s=10)  # expired, so seen afresh
    for nonce in "bcd":
        assert store.remember(nonce, now=111.0, ttl_s=10)
    assert len(store) == 3  # "a" was the oldest and made room
    assert store.remember("a", now=111.0, ttl_s=10)


def test_credentials() -> None:
    assert STORE.lookup(DOC_API_KEY) is DOC_CREDENTIAL and STORE.lookup("nope") is None
    assert len(STORE) == 2
    assert DOC_CREDENTIAL.client_secret == b"MySuperSecretKeyTellNo-1!2@3#4$5"
    assert "MySuper" not in repr(DOC_CREDENTIAL)
    with pytest.raises(ConfigError, match="not unique"):
        CredentialStore([DOC_CREDENTIAL, AudioHookCredential("dup", DOC_API_KEY, b"x")])
    with pytest.raises(ConfigError, match="not base64"):
        AudioHookCredential.from_base64("t", "k", "not base64!")
