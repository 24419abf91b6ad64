"""Masking: the one function every outbound text goes through.

* :func:`redact` masks the sensitive numbers of one text (``[CARD]``, ``[SSN]``, ``[CVV]``,
  and ``[PHONE]``/``[ACCOUNT]``/``[DOB]`` when enabled). It holds no state: sinks, log
  lines and the ledger run it as a last pass on whatever they write.
* :class:`RedactionWindow` (one per call) masks turn texts as they are produced, numbers
  read across segments and turns included, and then the other texts of the call (verdict
  evidence, alert messages) against what it has masked.

Why *mask eagerly* rather than *hold digit-bearing text until the window closes*: a held
turn would delay its evidence row and its alert by up to the window (15 s, against a 1.5 s
alert budget), would sit in clear in memory or in a spool while it waits, and a crash would
lose it. Rows are immutable once chained, so nothing may be masked after the fact either.
So a turn text is masked when it is first produced: every bare digit group of
``min_masked_digits`` (3) or more digits that is not an amount, date, time or count becomes
``[DIGITS]`` (it may be a piece of a number read across pauses), and so does any shorter
group that continues such a group from the speaker's previous text within the window. The
first piece of a number stays readable only if it is shorter than 3 digits, so at most 2
digits of a card or SSN are ever kept in clear across a call's texts. Amounts ("$45.20",
"forty dollars"), times ("3 pm"), dates and counts ("30 days") stay readable.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from cxguard.model import Speaker, TurnText
from cxguard.pii.detect import DEFAULT_OPTIONS, Finding, PiiOptions, findings
from cxguard.pii.sequence import TimedText, carry, chain_into, head, sequence_findings
from cxguard.pii.text import parse

DIGITS_MASK = "[DIGITS]"
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”")
_CALLER_KEYS = re.compile(r"(?:^|[._-])(?:ani|caller|from|msisdn|phone|callerid)$", re.IGNORECASE)
"""Keys of call data that hold the caller's phone number (AudioHook ``participant.ani``)."""


def _apply(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
    out, pos = [], 0
    for start, end, label in sorted(spans):
        if start < pos:
            continue
        out += [text[pos:start], label]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _masks(found: Iterable[Finding]) -> list[tuple[int, int, str]]:
    return [(f.start, f.end, f.mask) for f in found]


def redact(text: str, options: PiiOptions = DEFAULT_OPTIONS) -> str:
    """``text`` with every sensitive number masked. Idempotent (a pass may bring a context
    word closer to another number, so it repeats until nothing changes)."""
    current = text
    for _ in range(4):
        found = findings(current, options)
        if not found:
            return current
        current = _apply(current, _masks(found))
    return current


def mask_turn(
    previous: tuple[TimedText, ...], current: TimedText, options: PiiOptions = DEFAULT_OPTIONS
) -> tuple[str, list[str]]:
    """``current.text`` masked for storage, and the digit strings it masked (what later
    quotes of it must not show). ``previous``: the speaker's earlier texts (:func:`carry`)."""
    found = sequence_findings(previous, current, options)
    spans = _masks(found)
    secrets = [f.digits for f in found if f.digits]
    parsed = parse(current.text)
    linked = bool(chain_into(previous, current, options.window_ms))
    first = head(parsed)
    for run in parsed.runs:
        if not run.candidate:
            continue
        continues = linked and run is first
        if not continues and (run.weak_only or len(run.digits) < options.min_masked_digits):
            continue
        secrets.append(run.digits)
        atoms = (run.lead if continues else ()) + run.atoms
        stretch: list[tuple[int, int]] = []
        for atom in atoms:
            if any(s < atom.end and atom.start < e for s, e, _ in spans):
                stretch.append((-1, -1))
            elif stretch and stretch[-1][0] >= 0:
                stretch[-1] = (stretch[-1][0], atom.end)
            else:
                stretch.append((atom.start, atom.end))
        spans += [(s, e, DIGITS_MASK) for s, e in stretch if s >= 0]
    return redact(_apply(current.text, spans), options), secrets


class RedactionWindow:
    """The redactor of one call: keeps each speaker's recent digit-bearing texts (in memory
    only) and the digits it masked, so numbers read across segments and turns and later
    quotes of them are masked too. Not thread-safe: one per call, used by its pipeline."""

    def __init__(self, options: PiiOptions = DEFAULT_OPTIONS, remember: int = 64) -> None:
        self.options = options
        self._recent: dict[Speaker, tuple[TimedText, ...]] = {}
        self._secrets: deque[str] = deque(maxlen=remember)

    def push(self, turn: TurnText) -> str:
        """The stored form of ``turn``'s text; the window moves on past it. Call once per
        segment or turn, in stream order per speaker."""
        return self._mask(turn, advance=True)

    def peek(self, turn: TurnText) -> str:
        """The stored form of text still being spoken (a preview); the window stays put."""
        return self._mask(turn, advance=False)

    def _mask(self, turn: TurnText, advance: bool) -> str:
        if turn.undetermined_reason is not None and not turn.text:
            return turn.text
        current = TimedText(turn.text, turn.start_ms, turn.end_ms)
        previous = self._recent.get(turn.speaker, ())
        masked, secrets = mask_turn(previous, current, self.options)
        self._secrets.extend(s for s in secrets if len(s) >= 2)
        if advance:
            self._recent[turn.speaker] = carry(previous, current, self.options.window_ms)
        return masked

    def redact(self, text: str) -> str:
        """Any other text of this call (verdict evidence, alert message, handoff reason):
        sensitive numbers masked, and quoted digits that repeat what was masked in a turn."""
        out = redact(text, self.options)
        if not self._secrets or ('"' not in out and "“" not in out):
            return out
        spans: list[tuple[int, int, str]] = []
        for quote in _QUOTED.finditer(out):
            parsed = parse(quote.group())
            for run in parsed.runs:
                digits = run.digits
                if len(digits) >= 2 and any(digits in s for s in self._secrets):
                    base = quote.start()
                    spans.append((base + run.start, base + run.end, DIGITS_MASK))
        return _apply(out, spans)


def _is_caller_number(key: object, value: object) -> bool:
    return (
        isinstance(key, str)
        and isinstance(value, str)
        and _CALLER_KEYS.search(key) is not None
        and sum(c.isdigit() for c in value) >= 5
    )


def redact_data(value: Any, options: PiiOptions = DEFAULT_OPTIONS) -> Any:
    """Strings anywhere in ``value`` (mappings, lists) redacted; the caller's phone number
    (keys such as ``participant.ani``) masked whole."""
    if isinstance(value, str):
        return redact(value, options)
    if isinstance(value, Mapping):
        return {
            k: "[PHONE]" if _is_caller_number(k, v) else redact_data(v, options)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_data(v, options) for v in value]
    return value
