"""The caller's phone number and name never leave the parser in clear.

AudioHook's ``participant.ani`` / ``participant.aniName`` and any custom parameter whose
name says it is the caller's number or name (:data:`CALLER_ID_KEYS`, compared without case,
``-``, ``_``, ``.`` or spaces: ``From``, ``caller_id``, ``callerNumber``, ``ani`` …) are
replaced at the parser:

- with a key configured (``Settings.caller_id_key``): ``hmac-sha256:<32 hex>`` of the number
  with everything but digits and ``+`` removed (of the name, trimmed) — stable per key, so
  calls from one caller can be correlated, and useless without the key;
- without a key: the parameter is dropped.

Empty values are dropped either way. Other parameters are kept as sent: a deployment must not
put caller identity under other names.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Final

CALLER_ID_KEYS: Final = frozenset(
    {
        "from",
        "fromnumber",
        "caller",
        "callerid",
        "callernumber",
        "callerphone",
        "callername",
        "ani",
        "aniname",
        "participantani",
        "participantaniname",
        "msisdn",
        "phone",
        "phonenumber",
        "customerphone",
        "customernumber",
    }
)
HASH_PREFIX: Final = "hmac-sha256:"
_FOLD: Final = re.compile(r"[-_.\s]")
_NOT_NUMBER: Final = re.compile(r"[^0-9+]")


def is_caller_id_key(name: str) -> bool:
    return _FOLD.sub("", name).lower() in CALLER_ID_KEYS


def protect(value: str, key: bytes | None) -> str | None:
    """What to store for a caller-identity value: its keyed hash, or None (drop it)."""
    number = _NOT_NUMBER.sub("", value)
    canonical = number if len(number) >= 3 else value.strip()
    if key is None or not canonical:
        return None
    digest = hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest[:32]


def protect_parameters(parameters: Mapping[str, str], key: bytes | None) -> dict[str, str]:
    """``parameters`` with caller-identity entries hashed or dropped (see the module doc)."""
    kept: dict[str, str] = {}
    for name, value in parameters.items():
        if not is_caller_id_key(name):
            kept[name] = value
        elif (hashed := protect(value, key)) is not None:
            kept[name] = hashed
    return kept
