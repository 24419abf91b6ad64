"""``X-Twilio-Signature``: Twilio's published example, tampering, and URL port variants."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxguard.errors import AuthenticationError
from cxguard.protocols.twilio_signature import (
    check_signature,
    compute_signature,
    url_variants,
    validate_signature,
)

# The worked example from Twilio's request-validation docs (twilio-php "Validate Incoming
# Requests"): auth token 12345, this URL and these POST parameters sign to this value.
DOC_TOKEN = "12345"
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
DOC_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="

WSS = "wss://guard.example.com/twilio"
TOKEN = "f3a9b2c4d5e6f708192a3b4c5d6e7f80"


def test_twilio_documentation_vector() -> None:
    assert compute_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS) == DOC_SIGNATURE
    assert validate_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS, DOC_SIGNATURE)


def test_parameters_are_signed_in_name_order_without_separators() -> None:
    shuffled = dict(reversed(list(DOC_PARAMS.items())))
    assert compute_signature(DOC_TOKEN, DOC_URL, shuffled) == DOC_SIGNATURE
    data = DOC_URL + "".join(k + DOC_PARAMS[k] for k in sorted(DOC_PARAMS))
    digest = hmac.new(DOC_TOKEN.encode(), data.encode(), hashlib.sha1).digest()
    assert base64.b64encode(digest).decode() == DOC_SIGNATURE


@pytest.mark.parametrize(
    ("token", "url", "params", "signature"),
    [
        pytest.param("54321", DOC_URL, DOC_PARAMS, DOC_SIGNATURE, id="other token"),
        pytest.param(DOC_TOKEN, DOC_URL.replace("foo=1", "foo=2"), DOC_PARAMS, DOC_SIGNATURE,
                     id="query changed"),
        pytest.param(DOC_TOKEN, DOC_URL.replace("https", "http"), DOC_PARAMS, DOC_SIGNATURE,
                     id="scheme changed"),
        pytest.param(DOC_TOKEN, DOC_URL.replace("mycompany", "evil"), DOC_PARAMS, DOC_SIGNATURE,
                     id="host changed"),
        pytest.param(DOC_TOKEN, DOC_URL, {**DOC_PARAMS, "Digits": "1235"}, DOC_SIGNATURE,
                     id="param value changed"),
        pytest.param(DOC_TOKEN, DOC_URL, {**DOC_PARAMS, "Extra": "1"}, DOC_SIGNATURE,
                     id="param added"),
        pytest.param(DOC_TOKEN, DOC_URL, {k: v for k, v in DOC_PARAMS.items() if k != "To"},
                     DOC_SIGNATURE, id="param removed"),
        pytest.param(DOC_TOKEN, DOC_URL, None, DOC_SIGNATURE, id="params dropped"),
        pytest.param(DOC_TOKEN, DOC_URL, DOC_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8", id="truncated"),
        pytest.param(DOC_TOKEN, DOC_URL, DOC_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B9=",
                     id="last char"),
        pytest.param(DOC_TOKEN, DOC_URL, DOC_PARAMS, "", id="empty signature"),
        pytest.param("", DOC_URL, DOC_PARAMS, DOC_SIGNATURE, id="empty token"),
        pytest.param(DOC_TOKEN, DOC_URL, DOC_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8\u00e9",
                     id="non-ascii signature"),
    ],
)  # fmt: skip
def test_tampering_fails(
    token: str, url: str, params: dict[str, str] | None, signature: str
) -> None:
    assert not validate_signature(token, url, params, signature)


def test_empty_token_never_validates_even_a_signature_made_with_it() -> None:
    forged = compute_signature("", WSS)
    assert not validate_signature("", WSS, None, forged)


@pytest.mark.parametrize(
    ("signed_url", "request_url"),
    [
        (WSS, "wss://guard.example.com:443/twilio"),
        ("wss://guard.example.com:443/twilio", WSS),
        ("https://h.example.com:443/x?a=1", "https://h.example.com/x?a=1"),
        ("http://h.example.com/x", "http://h.example.com:80/x"),
        ("ws://h.example.com:80/x", "ws://h.example.com/x"),
        ("wss://h.example.com/x", "wss://h.example.com:8443/x"),  # as Twilio's libraries do
        ("wss://user:pw@h.example.com:443/x", "wss://user:pw@h.example.com/x"),
        ("wss://[2001:db8::1]/x", "wss://[2001:db8::1]:443/x"),
    ],
)
def test_default_port_is_tried_both_ways(signed_url: str, request_url: str) -> None:
    signature = compute_signature(TOKEN, signed_url)
    assert validate_signature(TOKEN, request_url, None, signature)


def test_port_variants_do_not_cross_schemes_or_hosts() -> None:
    signature = compute_signature(TOKEN, "wss://guard.example.com:80/twilio")
    assert not validate_signature(TOKEN, WSS, None, signature)  # 80 is not wss's default
    signature = compute_signature(TOKEN, "wss://guard.example.com:443/twilio")
    assert not validate_signature(TOKEN, "wss://guard.example.org/twilio", None, signature)


def test_url_variants_keep_the_rest_of_the_url_byte_for_byte() -> None:
    assert url_variants("wss://h.example.com/x?") == (
        "wss://h.example.com/x?",
        "wss://h.example.com:443/x?",
    )
    assert url_variants("wss://h.example.com:443/x#f") == (
        "wss://h.example.com:443/x#f",
        "wss://h.example.com/x#f",
    )
    assert url_variants("urn:isbn:0451450523") == ("urn:isbn:0451450523",)
    assert url_variants("https://h.example.com:99999/x") == ("https://h.example.com:99999/x",)
    assert url_variants("https://[::1/x") == ("https://[::1/x",)  # urlsplit refuses it


def test_check_signature_raises_authentication_errors() -> None:
    signature = compute_signature(TOKEN, WSS)
    check_signature(TOKEN, WSS, signature)
    with pytest.raises(AuthenticationError) as missing:
        check_signature(TOKEN, WSS, None)
    assert missing.value.status == 401
    with pytest.raises(AuthenticationError) as wrong:
        check_signature(TOKEN, WSS + "?x=1", signature)
    assert wrong.value.status == 403


@settings(max_examples=150, database=None, deadline=None)
@given(
    token=st.text(min_size=1, max_size=40),
    url=st.text(max_size=80),
    params=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=5),
)
def test_any_signed_request_validates(token: str, url: str, params: dict[str, str]) -> None:
    assert validate_signature(token, url, params, compute_signature(token, url, params))


@settings(max_examples=150, database=None, deadline=None)
@given(token=st.text(max_size=40), url=st.text(max_size=80), signature=st.text(max_size=40))
def test_validation_never_raises(token: str, url: str, signature: str) -> None:
    assert isinstance(validate_signature(token, url, {"a": "b"}, signature), bool)
