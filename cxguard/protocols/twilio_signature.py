"""``X-Twilio-Signature``: how Twilio signs its requests, and checking it.

Twilio appends every POST parameter to the full URL it requested, as ``name + value`` in
name order with no separators, takes HMAC-SHA1 of that UTF-8 string keyed with the account's
auth token, and sends the base64 digest. A Media Streams WebSocket upgrade has no POST body,
so only the full ``wss://`` URL is signed (``<Stream>`` URLs carry no query string; custom
values travel as ``<Parameter>``\\ s in the ``start`` message instead).

Twilio's helper libraries accept a signature made over the URL with the scheme's default
port written out *or* left off, because Twilio's own signing is not consistent about it;
:func:`validate_signature` does the same (``https``/``wss`` 443, ``http``/``ws`` 80).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from cxguard.errors import AuthenticationError

_DEFAULT_PORTS: Final = {"https": 443, "wss": 443, "http": 80, "ws": 80}


def compute_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """The base64 HMAC-SHA1 signature Twilio sends for ``url`` and POST ``params``."""
    fields = params or {}
    data = url + "".join(name + fields[name] for name in sorted(fields))
    # surrogatepass: a str that is not valid Unicode still signs (and so never matches)
    # rather than raising from a validator that promises a bool.
    digest = hmac.new(
        auth_token.encode("utf-8", "surrogatepass"),
        data.encode("utf-8", "surrogatepass"),
        hashlib.sha1,
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def url_variants(url: str) -> tuple[str, ...]:
    """``url`` as given, without an explicit port, and with the scheme's default port."""
    variants = [url]
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        return tuple(variants)
    netloc = parts.netloc
    if not netloc:
        return tuple(variants)
    userinfo, at, hostport = netloc.rpartition("@")
    if port is not None:
        bare = hostport[: hostport.rfind(":")]  # the last colon; an IPv6 host is bracketed
        variants.append(_with_netloc(url, netloc, f"{userinfo}{at}{bare}"))
    elif parts.scheme.lower() in _DEFAULT_PORTS:
        default = _DEFAULT_PORTS[parts.scheme.lower()]
        variants.append(_with_netloc(url, netloc, f"{netloc}:{default}"))
    return tuple(dict.fromkeys(variants))


def validate_signature(
    auth_token: str, url: str, params: Mapping[str, str] | None, signature: str
) -> bool:
    """True when ``signature`` is Twilio's for ``url`` and ``params`` under ``auth_token``.

    An empty token or signature never validates (a missing secret must not accept a
    signature computed with an empty key). Never raises for any ``str`` input.
    """
    if not auth_token or not signature:
        return False
    expected = signature.encode("utf-8", "surrogatepass")
    matched = False
    for candidate in url_variants(url):
        computed = compute_signature(auth_token, candidate, params).encode("ascii")
        # Check every variant, so timing does not tell which form matched.
        matched |= hmac.compare_digest(computed, expected)
    return matched


def check_signature(
    auth_token: str, url: str, signature: str | None, params: Mapping[str, str] | None = None
) -> None:
    """Raise :class:`AuthenticationError` unless the request carries Twilio's signature.

    A missing header answers 401, a wrong signature 403.
    """
    if not signature:
        raise AuthenticationError("missing X-Twilio-Signature header", status=401)
    if not validate_signature(auth_token, url, params, signature):
        raise AuthenticationError("X-Twilio-Signature does not match the request", status=403)


def _with_netloc(url: str, old: str, new: str) -> str:
    # Replace only the authority, byte for byte, so the rest of the URL stays exactly as
    # signed (urlunsplit would drop an empty "?" or "#").
    return url.replace(f"//{old}", f"//{new}", 1)
