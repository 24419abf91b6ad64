"""The one detector of card numbers, SSNs and card security codes (and, optionally, phone
numbers, account numbers and dates of birth), used by the policy's ``check`` matcher and by
every redaction: what redaction masks in an agent turn, the PII assertion fails on.

A ground-floor room: it imports only ``cxguard.model``/``cxguard.errors`` and the stdlib,
and ``policy``, ``evidence``, ``sinks`` and ``runtime`` import it. ``docs/PII.md`` describes
the forms it reads, the stance on misheard card numbers, and the sequence window.

One text::

    findings("card 4111 1111 1111 1111")      # [Finding(kind='card_number', ...)]
    redact("my SSN is 123-45-6789")          # 'my SSN is [SSN]'
    check("cvv", "the CVV is 123")            # Finding | None

Numbers read across segments and turns of one speaker (pure; the caller keeps ``carry``)::

    found = sequence_findings(previous, TimedText(text, start_ms, end_ms), options)
    previous = carry(previous, TimedText(text, start_ms, end_ms), options.window_ms)

What leaves a call (one :class:`RedactionWindow` per call)::

    window = RedactionWindow()
    stored = window.push(turn_text)           # masked turn text for ledger, alerts, listeners
    shown = window.peek(text_so_far)          # a preview, the window does not move
    evidence = window.redact(result.evidence) # any other text of the call
"""

from __future__ import annotations

from collections.abc import Sequence

from cxguard.pii.detect import (
    DEFAULT_OPTIONS,
    ISSUERS,
    KINDS,
    MASKS,
    Finding,
    Kind,
    PiiOptions,
    card_brand,
    findings,
    luhn_valid,
    valid_card,
    valid_ssn,
)
from cxguard.pii.redact import DIGITS_MASK, RedactionWindow, mask_turn, redact, redact_data
from cxguard.pii.sequence import TimedText, carry, sequence_findings
from cxguard.pii.text import parse


def check(
    kind: Kind,
    text: str,
    previous: Sequence[TimedText] = (),
    *,
    start_ms: float = 0.0,
    end_ms: float = 0.0,
    options: PiiOptions = DEFAULT_OPTIONS,
) -> Finding | None:
    """The first ``kind`` number in ``text``, or one ``text`` completes after ``previous``
    (the same speaker's earlier texts, from :func:`carry`)."""
    current = TimedText(text, start_ms, end_ms)
    found = sequence_findings(previous, current, options) if previous else findings(text, options)
    return next((f for f in found if f.kind == kind), None)


def holds_number(text: str) -> bool:
    """Any digit (amounts included) or number words in ``text`` (a lone homophone such as
    "for" is not one): text that may hold part of a number read out, whatever it is."""
    return any(c.isdigit() for c in text) or any(not r.weak_only for r in parse(text).runs)


__all__ = [
    "DEFAULT_OPTIONS",
    "DIGITS_MASK",
    "ISSUERS",
    "KINDS",
    "MASKS",
    "Finding",
    "Kind",
    "PiiOptions",
    "RedactionWindow",
    "TimedText",
    "card_brand",
    "carry",
    "check",
    "findings",
    "holds_number",
    "luhn_valid",
    "mask_turn",
    "redact",
    "redact_data",
    "sequence_findings",
    "valid_card",
    "valid_ssn",
]
