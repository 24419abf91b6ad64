"""Exact detectors behind the ``check`` matcher: card numbers and US SSNs, said in digits or
in words.

ASR writes a number read aloud in many ways: "4111 1111 1111 1111", "four one one one, one one
one one …", "forty-one eleven …", "double oh seven". Digit runs are rebuilt from digit tokens
and number words (units, "oh", teens, tens, "double"/"triple"); homophones ("for", "to",
"won", "ate") count only inside a run, never at its edges. Anything else ends a run.

A card number is a Luhn-valid run of 13–19 digits starting with 2–6 (the major networks:
Mastercard, Amex/Diners, Visa, Mastercard, Discover/UnionPay), either a whole run or a run of
whole spoken groups inside a longer one. An SSN is 3-2-4 digits separated by dashes or spaces,
or any 9-digit run in a turn that says "social"/"SSN"; both must have a valid structure
(area not 000/666/9xx, group not 00, serial not 0000). Evidence never repeats the number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

CheckName = Literal["card_number", "ssn"]

_UNITS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "nought": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "niner": "9",
}
_TEENS = {
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
}
_TENS = {
    "twenty": "2",
    "thirty": "3",
    "forty": "4",
    "fourty": "4",
    "fifty": "5",
    "sixty": "6",
    "seventy": "7",
    "eighty": "8",
    "ninety": "9",
}
_WEAK = {"to": "2", "too": "2", "for": "4", "won": "1", "ate": "8"}
_REPEAT = {"double": 2, "triple": 3}
_GROUP_BREAK = frozenset(",.-–—/")
_TOKEN = re.compile(r"[a-z]+|\d+|\S", re.IGNORECASE)
_SSN_DIGITS = re.compile(r"(?<![\d-])(\d{3})[- ](\d{2})[- ](\d{4})(?![\d-])")
_SSN_CONTEXT = re.compile(r"\b(social|ssn|s\.?\s?s\.?\s?n\.?)(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    check: CheckName
    start: int
    end: int
    evidence: str


@dataclass(frozen=True)
class DigitRun:
    digits: str
    start: int
    end: int
    groups: tuple[int, ...]
    """Digit count of each spoken/written group, in order (groups split at punctuation and
    around written numbers)."""


@dataclass
class _Piece:
    digits: str
    start: int
    end: int
    group: int
    weak: bool = False


def _finish(pieces: list[_Piece]) -> DigitRun | None:
    while pieces and pieces[0].weak:
        pieces.pop(0)
    while pieces and pieces[-1].weak:
        pieces.pop()
    if not pieces:
        return None
    groups: list[int] = []
    for k, piece in enumerate(pieces):
        if k and pieces[k - 1].group == piece.group:
            groups[-1] += len(piece.digits)
        else:
            groups.append(len(piece.digits))
    digits = "".join(p.digits for p in pieces)
    return DigitRun(digits, pieces[0].start, pieces[-1].end, tuple(groups))


def _tens(tokens: list[tuple[str, int, int]], i: int) -> tuple[str, int, int]:
    """ "forty" / "forty one" / "forty-one" at ``i``: (digits, end offset, tokens used)."""
    word, _, end = tokens[i]
    j = i + 2 if i + 2 < len(tokens) and tokens[i + 1][0] == "-" else i + 1
    if j < len(tokens) and tokens[j][0] in _UNITS and _UNITS[tokens[j][0]] != "0":
        return _TENS[word] + _UNITS[tokens[j][0]], tokens[j][2], j - i + 1
    return _TENS[word] + "0", end, 1


def digit_runs(text: str) -> Iterator[DigitRun]:
    """Every run of spoken or written digits in ``text``, in order."""
    tokens = [(m.group().lower(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    pieces: list[_Piece] = []
    group, i = 0, 0
    while i < len(tokens):
        word, start, end = tokens[i]
        nxt = tokens[i + 1][0] if i + 1 < len(tokens) else ""
        used = 1
        if word.isdigit():
            pieces.append(_Piece(word, start, end, group + 1))
            group += 2  # a written number is a group of its own ("4111 1111 …")
        elif word in _UNITS or word in _TEENS:
            pieces.append(_Piece(_UNITS.get(word) or _TEENS[word], start, end, group))
        elif word in _TENS:
            digits, end, used = _tens(tokens, i)
            pieces.append(_Piece(digits, start, end, group))
        elif word in _REPEAT and nxt in _UNITS:
            pieces.append(_Piece(_UNITS[nxt] * _REPEAT[word], start, tokens[i + 1][2], group))
            used = 2
        elif word in _WEAK:
            pieces.append(_Piece(_WEAK[word], start, end, group, weak=True))
        elif word in _GROUP_BREAK:
            group += 1
        else:
            run = _finish(pieces)
            if run is not None:
                yield run
            pieces = []
        i += used
    run = _finish(pieces)
    if run is not None:
        yield run


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card_candidates(run: DigitRun) -> Iterator[str]:
    """Longest first, so the whole number is reported rather than a valid piece of it."""
    digits = run.digits
    if len(run.groups) == 1 and len(digits) > 19:  # one breath, no grouping: any window
        spans = [(a, a + n) for n in range(13, 20) for a in range(len(digits) - n + 1)]
    else:
        offsets = [0]
        for size in run.groups:
            offsets.append(offsets[-1] + size)
        spans = [
            (offsets[a], offsets[b])
            for a in range(len(run.groups))
            for b in range(a + 1, len(run.groups) + 1)
        ]
    for start, end in sorted(spans, key=lambda span: (span[0] - span[1], span[0])):
        if 13 <= end - start <= 19:
            yield digits[start:end]


def find_card_numbers(text: str) -> Iterator[Finding]:
    for run in digit_runs(text):
        if len(run.digits) < 13:
            continue
        for candidate in _card_candidates(run):
            if candidate[0] in "23456" and luhn_valid(candidate):
                yield Finding(
                    "card_number",
                    run.start,
                    run.end,
                    f"card number ending {candidate[-4:]} ({len(candidate)} digits, "
                    f"Luhn-valid) at chars {run.start}-{run.end}",
                )
                break


def _ssn_valid(digits: str) -> bool:
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def find_ssns(text: str) -> Iterator[Finding]:
    for m in _SSN_DIGITS.finditer(text):
        digits = "".join(m.groups())
        if _ssn_valid(digits):
            yield Finding(
                "ssn",
                m.start(),
                m.end(),
                f"SSN ending {digits[-4:]} at chars {m.start()}-{m.end()}",
            )
    if _SSN_CONTEXT.search(text):
        for run in digit_runs(text):
            if len(run.digits) == 9 and _ssn_valid(run.digits):
                yield Finding(
                    "ssn",
                    run.start,
                    run.end,
                    f"SSN ending {run.digits[-4:]} "
                    f"(9 digits in a turn naming it) at chars {run.start}-{run.end}",
                )


def run_check(name: CheckName, text: str) -> Finding | None:
    finder = find_card_numbers if name == "card_number" else find_ssns
    return next(finder(text), None)
