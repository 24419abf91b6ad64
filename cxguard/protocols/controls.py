"""Trusted mid-call signals (``ControlEvent``) as every protocol core builds them.

A signal arrives as a name and an optional value: a Twilio ``customParameters`` entry or a
``cxguard.<name>=<value>`` mark, an AudioHook ``customConfig`` entry. Names are lower-case
identifiers; ``intent`` and ``agent_version`` need a value, ``authenticated``,
``unauthenticated`` and ``handoff`` take none. Anything else well-formed passes through
(the policy ignores names it does not know). A malformed signal is not dropped silently
and does not end the stream (it comes from our own side, and monitoring must go on): it
becomes ``ControlEvent("invalid_control", …, {"reason": …})``, recorded as evidence and
ignored by the policy — never a signal the policy would misread.
"""

from __future__ import annotations

import re
from typing import Final

from cxguard.model import ControlEvent

INVALID: Final = "invalid_control"
NEEDS_VALUE: Final = frozenset({"intent", "agent_version"})
NO_VALUE: Final = frozenset({"authenticated", "unauthenticated", "handoff"})
MAX_VALUE_CHARS: Final = 200

_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,39}")


def control_event(name: str, value: str | None, at_ms: float) -> ControlEvent:
    """The event for signal ``name`` (``value`` None: the signal carried none)."""
    if not _NAME.fullmatch(name) or name == INVALID:
        return _invalid("control name is not a lower-case identifier", at_ms)
    if value is not None:
        value = value.strip()
    if name in NEEDS_VALUE:
        if not value:
            return _invalid(f"{name} needs a value", at_ms)
        if len(value) > MAX_VALUE_CHARS:
            return _invalid(f"{name} value is over {MAX_VALUE_CHARS} characters", at_ms)
        return ControlEvent(name, at_ms, {name: value})
    if name in NO_VALUE or not value:
        return ControlEvent(name, at_ms)
    if len(value) > MAX_VALUE_CHARS:
        return _invalid(f"{name} value is over {MAX_VALUE_CHARS} characters", at_ms)
    return ControlEvent(name, at_ms, {name: value})


def _invalid(reason: str, at_ms: float) -> ControlEvent:
    return ControlEvent(INVALID, at_ms, {"reason": reason})
