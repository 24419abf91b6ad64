"""Redaction of payment-card numbers, US SSNs and card security codes, before any write.

Transcripts come from Whisper, so a number may be written (``4111 1111 1111 1111``), spoken
(``four one one one ...``, ``oh``, ``double five``, ``triple one``, ``forty one eleven``) or both
mixed. The text is scanned into *digit runs*: digit atoms (a block of digits or a number word)
joined by separators (spaces, commas, dashes, dots, "dash", fillers). Inside a run:

* ``[CARD]``: every atom-aligned window of 13–19 digits that passes the Luhn check; with card
  words nearby ("card", "visa", "cc", ...) also a run of 13+ digits that fails it (a mis-heard
  digit must not leak the other fifteen) and a Luhn-valid 12-digit run (Maestro).
* ``[SSN]``: a run written ``AAA-GG-SSSS`` / ``AAA GG SSSS`` (or spoken with those pauses)
  with a valid area/group/serial, or any 9-digit run near "social security" / "SSN".
* ``[CVV]``: a 3–4 digit run right after (or just before) "security code", "CVV", "CVC", ...

Written North American phone numbers (``NXX-NXX-XXXX``) are cut out of runs first: no card is
grouped 3-3-4, and two numbers read in one breath would otherwise hold a Luhn-valid window
four times in ten. Other false positives are preferred to a leak (a chance Luhn hit inside an
IBAN, digits read right after a card). :func:`redact` repeats until nothing changes, so it is
idempotent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["CARD", "SSN", "CVV"]

_UNITS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_TEENS = {
    "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19",
}  # fmt: skip
_TENS = {
    "twenty": "2", "thirty": "3", "forty": "4", "fourty": "4", "fifty": "5", "sixty": "6",
    "seventy": "7", "eighty": "8", "ninety": "9",
}  # fmt: skip
# Homophones Whisper writes for digits; they count only *inside* a run (between two digit
# atoms), so "waiting for" or "to" in ordinary speech never starts one.
_WEAK = {"for": "4", "to": "2", "too": "2", "won": "1", "ate": "8"}
_REPEAT = {"double": 2, "triple": 3}

_WORD = r"[A-Za-z]+"
_ATOM_RE = re.compile(
    rf"(?P<digits>\d+)"
    rf"|(?P<rep>\b(?:double|triple)\b)[\s-]+(?P<repw>\d\b|{_WORD})"
    rf"|(?P<tens>\b(?:{'|'.join(_TENS)})\b)(?:[\s-]+(?P<tensu>\b(?:{'|'.join(_UNITS)})\b))?"
    rf"|(?P<word>\b{_WORD}\b)",
    re.IGNORECASE,
)
# What may stand between two atoms of one run (a line break ends it: transcripts have none
# inside a turn). Punctuation, not bare spaces between spoken words, marks a group boundary,
# used to recognise the AAA-GG-SSSS shape of an SSN.
_FILLERS = frozenset({"dash", "hyphen", "uh", "um", "umm", "er", "erm", "ah", "hmm"})
_GAP_RE = re.compile(rf"(?:[ \t,.\-–/]|\b(?:{'|'.join(_FILLERS)})\b)*", re.IGNORECASE)

_CARD_CONTEXT = re.compile(
    r"\b(?:card|credit|debit|visa|master\s?card|amex|american\s+express|discover|maestro|"
    r"diners|jcb|pan|cc)\b",
    re.IGNORECASE,
)
_SSN_CONTEXT = re.compile(
    r"\b(?:social(?:\s+security)?|ssn|s\.?\s?s\.?\s?n\.?|tax\s+id)\b", re.IGNORECASE
)
_CVV_CONTEXT = re.compile(
    r"\b(?:cvv2?|cvc2?|cvn|cid|csc|security\s+code|verification\s+(?:code|value|number)|"
    r"(?:three|four|3|4)[\s-]digit\s+code|code\s+on\s+the\s+back)\b",
    re.IGNORECASE,
)
_CONTEXT_BEFORE = 60  # characters searched before a run for card / SSN words
_CONTEXT_AFTER = 25
_CVV_REACH = 40  # how far after "security code" the code may start


@dataclass(frozen=True)
class Span:
    """One sensitive stretch of text: ``text[start:end]`` is replaced by ``[kind]``."""

    start: int
    end: int
    kind: Kind


@dataclass(frozen=True)
class _Atom:
    start: int
    end: int
    digits: str
    weak: bool
    group_break: bool  # a punctuation gap (or two written blocks) separates it from the last
    written: bool  # numerals, not words


@dataclass(frozen=True)
class _Run:
    atoms: tuple[_Atom, ...]

    @property
    def start(self) -> int:
        return self.atoms[0].start

    @property
    def end(self) -> int:
        return self.atoms[-1].end

    @property
    def digits(self) -> str:
        return "".join(a.digits for a in self.atoms)

    def groups(self) -> list[int]:
        sizes: list[int] = []
        for atom in self.atoms:
            if atom.group_break or not sizes:
                sizes.append(0)
            sizes[-1] += len(atom.digits)
        return sizes


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _atom_digits(m: re.Match[str]) -> tuple[str, bool] | None:
    if m.group("digits"):
        return m.group("digits"), False
    if m.group("rep"):
        unit = m.group("repw").lower()
        digit = unit if unit.isdigit() else _UNITS.get(unit)
        return (digit * _REPEAT[m.group("rep").lower()], False) if digit else None
    if m.group("tens"):
        tens = _TENS[m.group("tens").lower()]
        unit = m.group("tensu")
        return tens + (_UNITS[unit.lower()] if unit else "0"), False
    word = m.group("word").lower()
    if word in _UNITS:
        return _UNITS[word], False
    if word in _TEENS:
        return _TEENS[word], False
    if word in _WEAK:
        return _WEAK[word], True
    return None


def _runs(text: str) -> list[_Run]:
    runs: list[list[_Atom]] = []
    current: list[_Atom] = []
    for m in _ATOM_RE.finditer(text):
        if (m.group("word") or "").lower() in _FILLERS:
            continue  # "four one, uh, one one": the gap check below accepts it
        parsed = _atom_digits(m)
        if parsed is None:
            if current:
                runs.append(current)
                current = []
            continue
        digits, weak = parsed
        if current:
            gap = text[current[-1].end : m.start()]
            if _GAP_RE.fullmatch(gap) is None:
                runs.append(current)
                current = []
        brk = False
        if current:
            gap = text[current[-1].end : m.start()]
            both_written = (
                bool(m.group("digits"))
                and current[-1].digits == text[current[-1].start : current[-1].end]
            )
            brk = bool(gap.strip()) or both_written
        written = bool(m.group("digits"))
        current.append(_Atom(m.start(), m.end(), digits, weak, brk, written))
    if current:
        runs.append(current)
    return [r for atoms in runs for part in _split_phones(atoms) for r in _split_weak(part)]


def _is_phone_at(atoms: list[_Atom], i: int) -> bool:
    """Written ``NXX-NXX-XXXX`` (a North American number) starts at ``atoms[i]``."""
    group = atoms[i : i + 3]
    return (
        len(group) == 3
        and all(a.written for a in group)
        and [len(a.digits) for a in group] == [3, 3, 4]
        and group[0].digits[0] in "23456789"
        and group[1].digits[0] in "23456789"
    )


def _split_phones(atoms: list[_Atom]) -> list[list[_Atom]]:
    """Cut written phone numbers out of a run: cards are never grouped 3-3-4, and two
    numbers read in one breath ("905-674-3793, 780-999-2181") would otherwise hold a
    Luhn-valid window four times in ten."""
    parts: list[list[_Atom]] = []
    start = i = 0
    while i < len(atoms):
        if _is_phone_at(atoms, i):
            lead = i - 1 if i > start and atoms[i - 1].written and atoms[i - 1].digits == "1" else i
            parts += [atoms[start:lead], atoms[lead : i + 3]]
            start = i = i + 3
        else:
            i += 1
    parts.append(atoms[start:])
    return [p for p in parts if p]


def _split_weak(atoms: list[_Atom]) -> list[_Run]:
    """Drop weak atoms at the ends of a run (they only count between real digits)."""
    while atoms and atoms[0].weak:
        atoms = atoms[1:]
    while atoms and atoms[-1].weak:
        atoms = atoms[:-1]
    return [_Run(tuple(atoms))] if atoms else []


def _near(pattern: re.Pattern[str], text: str, start: int, end: int) -> bool:
    window = text[max(0, start - _CONTEXT_BEFORE) : end + _CONTEXT_AFTER]
    return pattern.search(window) is not None


def _card_spans(text: str, run: _Run) -> list[tuple[int, int]]:
    atoms = run.atoms
    spans: list[tuple[int, int]] = []
    for i in range(len(atoms)):
        digits = ""
        for j in range(i, len(atoms)):
            digits += atoms[j].digits
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_ok(digits):
                spans.append((atoms[i].start, atoms[j].end))
    n = len(run.digits)
    # Maestro (12 digits) or a number with a mis-heard digit: the context decides.
    long_enough = n > 12 or (n == 12 and luhn_ok(run.digits))
    if not spans and long_enough and _near(_CARD_CONTEXT, text, run.start, run.end):
        spans.append((run.start, run.end))
    return _merge(spans)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def _valid_ssn(digits: str) -> bool:
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _is_ssn(text: str, run: _Run) -> bool:
    digits = run.digits
    if len(digits) != 9:
        return False
    if run.groups() == [3, 2, 4] and _valid_ssn(digits):
        return True
    return _near(_SSN_CONTEXT, text, run.start, run.end)


def _cvv_runs(text: str, runs: list[_Run]) -> set[int]:
    hits: set[int] = set()
    for m in _CVV_CONTEXT.finditer(text):
        for k, run in enumerate(runs):
            if len(run.digits) not in (3, 4):
                continue
            after = m.end() <= run.start <= m.end() + _CVV_REACH
            before = run.end <= m.start() and m.start() - run.end <= 20
            if after or before:
                hits.add(k)
                if after:
                    break
    return hits


def find_sensitive(text: str) -> list[Span]:
    """Every card number, SSN and security code in ``text``, sorted, not overlapping."""
    runs = _runs(text)
    found: list[Span] = []
    cvv = _cvv_runs(text, runs)
    for k, run in enumerate(runs):
        cards = _card_spans(text, run)
        if cards:
            found.extend(Span(s, e, "CARD") for s, e in cards)
        elif _is_ssn(text, run):
            found.append(Span(run.start, run.end, "SSN"))
        elif k in cvv:
            found.append(Span(run.start, run.end, "CVV"))
    return sorted(found, key=lambda s: s.start)


def find_card_numbers(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the payment-card numbers in ``text``."""
    return [(s.start, s.end) for s in find_sensitive(text) if s.kind == "CARD"]


def _redact_once(text: str) -> str:
    out = text
    for span in reversed(find_sensitive(text)):
        out = out[: span.start] + f"[{span.kind}]" + out[span.end :]
    return out


def redact(text: str) -> str:
    """``text`` with card numbers, SSNs and security codes replaced by ``[CARD]``, ``[SSN]``,
    ``[CVV]``. Idempotent: a replacement can bring context words closer to another number,
    so the pass repeats until nothing changes (each pass removes digits, so it ends)."""
    current = text
    while True:
        nxt = _redact_once(current)
        if nxt == current:
            return current
        current = nxt
