"""The control API's wire format: mid-call facts a platform posts about a live call.

``POST /calls/{call_id}/events`` carries one JSON object with one or more facts::

    {"authenticated": true}                    the caller passed verification
    {"authenticated": false}                   ... or lost it (``unauthenticated``)
    {"intent": "account_closure"}              the caller's intent changed
    {"handoff": true}                          the call is being handed to a person now
    {"agent_version": "billing-bot 2.4.1"}     the agent release now answering

Several facts in one body apply in the order above (a handoff last, after the state it
meets). An optional ``"id"`` (a string of at most 128 characters, unique per request) makes
a retried request harmless: the runtime applies an id once per call. This module only reads
the bytes (sans-I/O); the runtime finds the call and feeds the signals to it at the call's
current stream position. A body that is not exactly this shape is refused whole
(:class:`~cxguard.errors.ControlRequestError`, status 400): nothing of a half-understood
request is applied.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from cxguard.errors import ControlRequestError
from cxguard.protocols.base import is_utf8
from cxguard.protocols.controls import MAX_VALUE_CHARS

MAX_BODY_BYTES: Final = 8 * 1024
FIELDS: Final = ("authenticated", "intent", "agent_version", "handoff")
"""The facts a body may carry, in the order they are applied."""
MAX_CALL_ID_CHARS: Final = 128
MAX_REQUEST_ID_CHARS: Final = 128
_PATH: Final = re.compile(r"/calls/([^/]+)/events")


@dataclass(frozen=True)
class Fact:
    """One signal for the call: a :func:`~cxguard.protocols.controls.control_event` name and
    its value (None for the signals that take none)."""

    name: str
    value: str | None = None


def call_id_of(path: str) -> str | None:
    """The call id of a control-API path (percent-decoded); None if it is not one."""
    found = _PATH.fullmatch(path)
    if found is None:
        return None
    try:
        call_id = unquote(found.group(1), errors="strict")
    except UnicodeDecodeError:
        raise ControlRequestError("the call id is not percent-encoded UTF-8", 400) from None
    if not call_id or len(call_id) > MAX_CALL_ID_CHARS or not call_id.isprintable():
        raise ControlRequestError("the call id is empty, too long or not printable", 400)
    return call_id


@dataclass(frozen=True)
class ControlRequest:
    facts: tuple[Fact, ...]
    request_id: str | None = None


def parse_request(body: bytes) -> ControlRequest:
    """The facts of a request body, in the order they apply, and its ``id`` if any."""
    request_id = None
    document = _document(body)
    if "id" in document:
        value = document.pop("id")
        if not isinstance(value, str) or not 0 < len(value) <= MAX_REQUEST_ID_CHARS:
            raise ControlRequestError(f"id must be a string of 1-{MAX_REQUEST_ID_CHARS} chars")
        if not is_utf8(value) or not value.isprintable():
            raise ControlRequestError("id must be printable text")
        request_id = value
    return ControlRequest(tuple(_facts(document)), request_id)


def parse_facts(body: bytes) -> list[Fact]:
    """The facts of a request body (no ``id``), in the order they apply."""
    return _facts(_document(body))


def _document(body: bytes) -> dict[str, object]:
    if len(body) > MAX_BODY_BYTES:
        raise ControlRequestError(f"body over {MAX_BODY_BYTES} bytes", 413)
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ControlRequestError("body is not JSON", 400) from None
    if not isinstance(document, dict):
        raise ControlRequestError(f"body must be an object with one of {', '.join(FIELDS)}")
    return document


def _facts(document: dict[str, object]) -> list[Fact]:
    if not document:
        raise ControlRequestError(f"body must be an object with one of {', '.join(FIELDS)}")
    unknown = sorted(k for k in document if k not in FIELDS)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise ControlRequestError(f"unknown field(s) {shown}; known: {', '.join(FIELDS)}")
    facts = []
    for name in FIELDS:
        if name not in document:
            continue
        value = document[name]
        if name == "authenticated":
            facts.append(Fact("authenticated" if _flag(name, value) else "unauthenticated"))
        elif name == "handoff":
            if not _flag(name, value):
                raise ControlRequestError("handoff can only be true (a handoff happened)")
            facts.append(Fact("handoff"))
        else:
            facts.append(Fact(name, _text(name, value)))
    return facts


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ControlRequestError(f"{name} must be true or false")
    return value


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ControlRequestError(f"{name} must be a non-empty string")
    if len(value) > MAX_VALUE_CHARS or not is_utf8(value):
        raise ControlRequestError(f"{name} must be valid text of at most {MAX_VALUE_CHARS} chars")
    return value.strip()
