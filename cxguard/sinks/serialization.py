"""JSON form of verdicts, alerts and handoff requests, as sinks publish them.

The shape is the dataclass fields with mappings as objects and tuples as lists, plus a
``type`` tag and ``schema`` version, so consumers can tell the messages apart.

Every payload leaving through a sink is built here, so this is the last pass of redaction:
every string except the identifier fields (:data:`IDENTIFIERS`: ids, tenant, enum values,
hashes, which consumers match on and which hold no speech) goes through
:func:`cxguard.pii.redact`. The runtime has already masked the turn (numbers read across
turns included, ``cxguard.pii.RedactionWindow``); this pass catches whatever a caller forgot.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from cxguard import pii
from cxguard.model import Alert, HandoffRequest, Verdict

SCHEMA_VERSION = 1

_TYPES: dict[type, str] = {Verdict: "verdict", Alert: "alert", HandoffRequest: "handoff"}

IDENTIFIERS = frozenset(
    {"call_id", "tenant", "alert_id", "idempotency_key", "account_sid", "assertion_id",
     "assertions", "policy_hash", "speaker", "outcome", "severity", "kind", "source",
     "actions", "model_ids"}
)  # fmt: skip
"""Fields published as given (and, inside ``model_ids``/``scores``, the mapping keys)."""


def _plain(value: Any, redact: bool = True) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name), redact and f.name not in IDENTIFIERS)
            for f in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, redact) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    if isinstance(value, str) and redact:
        return pii.redact(value)
    return value


def to_json_dict(obj: Verdict | Alert | HandoffRequest) -> dict[str, Any]:
    """``obj`` as JSON-ready dict: ``{"type": ..., "schema": 1, <fields>}``, free text
    redacted."""
    kind = _TYPES.get(type(obj))
    if kind is None:
        raise TypeError(f"cannot serialise {type(obj).__name__}")
    body: dict[str, Any] = _plain(obj)
    return {"type": kind, "schema": SCHEMA_VERSION, **body}


def to_json(obj: Verdict | Alert | HandoffRequest) -> str:
    return json.dumps(to_json_dict(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
