"""JSON form of verdicts, alerts and handoff requests, as sinks publish them.

The shape is the dataclass fields with mappings as objects and tuples as lists, plus a
``type`` tag and ``schema`` version, so consumers can tell the messages apart. Text is
published as given: the runtime hands sinks verdicts whose text is already redacted.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from cxguard.model import Alert, HandoffRequest, Verdict

SCHEMA_VERSION = 1

_TYPES: dict[type, str] = {Verdict: "verdict", Alert: "alert", HandoffRequest: "handoff"}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    return value


def to_json_dict(obj: Verdict | Alert | HandoffRequest) -> dict[str, Any]:
    """``obj`` as JSON-ready dict: ``{"type": ..., "schema": 1, <fields>}``."""
    kind = _TYPES.get(type(obj))
    if kind is None:
        raise TypeError(f"cannot serialise {type(obj).__name__}")
    body: dict[str, Any] = _plain(obj)
    return {"type": kind, "schema": SCHEMA_VERSION, **body}


def to_json(obj: Verdict | Alert | HandoffRequest) -> str:
    return json.dumps(to_json_dict(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
