"""How ASR writes a number read aloud: a generator of the forms the detector must read.

Used by the property tests and ``benchmarks/pii_bench.py`` (never at run time). Each form
is named, so recall can be reported per form::

    rng = random.Random(7)
    number = random_card(rng)
    text = speak(number, "homophones", rng, card_groups(number))
"""

from __future__ import annotations

import random

from cxguard.pii.detect import ISSUERS, luhn_valid, valid_ssn

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
          "seventeen", "eighteen", "nineteen")  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_HOMOPHONES = {"4": "for", "2": "to", "1": "won", "8": "ate"}
_FILLERS = ("uh", "um", "er", "dash", "hyphen", "uh,", "um,")
FORMS = (
    "digits_grouped",
    "digits_run",
    "digits_dashed",
    "words",
    "words_one_breath",
    "mixed",
    "oh_zero",
    "double_triple",
    "niner",
    "fillers",
    "homophones",
    "teens_tens",
    "fullwidth",
    "arabic_indic",
    "asr_punctuation",
    "sentence_split",
)


def _complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def random_card(rng: random.Random) -> str:
    """A Luhn-valid number in a published issuer range, of one of that issuer's lengths."""
    _, ranges, lengths = rng.choice(ISSUERS)
    low, high = rng.choice(ranges)
    prefix = str(rng.randint(int(low), int(high))).zfill(len(low))
    return _complete(prefix, rng.choice(lengths), rng)


def random_ssn(rng: random.Random) -> str:
    while True:
        digits = "".join(rng.choice("0123456789") for _ in range(9))
        if valid_ssn(digits):
            return digits


def card_groups(number: str) -> tuple[int, ...]:
    """How people group a card when they read it: 4-6-5 for 15 digits, else fours."""
    if len(number) == 15:
        return (4, 6, 5)
    sizes = [4] * (len(number) // 4)
    if len(number) % 4:
        sizes.append(len(number) % 4)
    return tuple(sizes)


def split(digits: str, sizes: tuple[int, ...]) -> list[str]:
    out, pos = [], 0
    for size in sizes:
        out.append(digits[pos : pos + size])
        pos += size
    if pos < len(digits):
        out.append(digits[pos:])
    return out


def _word(d: str, rng: random.Random, zero: tuple[str, ...] = ("zero", "oh")) -> str:
    return rng.choice(zero) if d == "0" else WORDS[int(d)]


def _pairs(group: str) -> str:
    """ "4111" as "forty one eleven", "0605" as "oh six oh five"."""
    parts = []
    if len(group) % 2:
        parts.append(WORDS[int(group[0])])
        group = group[1:]
    for a, b in zip(group[::2], group[1::2], strict=True):
        if a == "0":
            parts.append(f"oh {WORDS[int(b)]}")
        elif a == "1":
            parts.append(_TEENS[int(b)])
        else:
            parts.append(_TENS[int(a)] + ("" if b == "0" else f" {WORDS[int(b)]}"))
    return " ".join(parts)


def _repeats(group: str, rng: random.Random) -> str:
    parts, i = [], 0
    while i < len(group):
        d, run = group[i], 1
        while i + run < len(group) and group[i + run] == d and run < 3:
            run += 1
        if run >= 2:
            parts.append(f"{'triple' if run == 3 else 'double'} {_word(d, rng)}")
        else:
            parts.append(_word(d, rng))
        i += run
    return " ".join(parts)


def speak_group(group: str, form: str, rng: random.Random) -> str:
    if form in ("digits_grouped", "digits_run", "digits_dashed", "asr_punctuation",
                "sentence_split"):  # fmt: skip
        return group
    if form == "fullwidth":
        return "".join(chr(0xFF10 + int(d)) for d in group)
    if form == "arabic_indic":
        return "".join(chr(0x0660 + int(d)) for d in group)
    if form == "mixed":
        return " ".join(d if rng.random() < 0.4 else _word(d, rng) for d in group)
    if form == "oh_zero":
        return " ".join(_word(d, rng, ("oh", "o", "O", "nought", "zero")) for d in group)
    if form == "double_triple":
        return _repeats(group, rng)
    if form == "niner":
        return " ".join("niner" if d == "9" else _word(d, rng) for d in group)
    if form == "teens_tens":
        return _pairs(group)
    return " ".join(_word(d, rng) for d in group)


def _homophones(digits: str, sizes: tuple[int, ...], rng: random.Random) -> list[str]:
    """Digit words with "for"/"to"/"won"/"ate" for most 4/2/1/8s, never the first or last
    digit of the number (a homophone counts only between two digits)."""
    out, pos = [], 0
    for group in split(digits, sizes):
        words = []
        for k, d in enumerate(group):
            inner = 0 < pos + k < len(digits) - 1
            swap = inner and d in _HOMOPHONES and rng.random() < 0.7
            words.append(_HOMOPHONES[d] if swap else _word(d, rng))
        out.append(" ".join(words))
        pos += len(group)
    return out


def speak(digits: str, form: str, rng: random.Random, sizes: tuple[int, ...]) -> str:
    """``digits`` (grouped as ``sizes``) the way ASR writes them when read in ``form``."""
    if form == "homophones":
        groups = _homophones(digits, sizes, rng)
    else:
        groups = [speak_group(g, form, rng) for g in split(digits, sizes)]
    if form == "digits_run":
        return "".join(groups)
    if form == "digits_dashed":
        return "-".join(groups)
    if form == "words_one_breath":
        return " ".join(groups)
    if form == "fillers":
        return " ".join(g + " " + rng.choice(_FILLERS) for g in groups[:-1]) + " " + groups[-1]
    if form == "asr_punctuation":
        return rng.choice(["-", ". ", "-", ", "]).join(groups) + rng.choice([".", "", "?"])
    if form == "sentence_split":
        half = len(groups) // 2
        return " ".join(groups[:half]) + ". " + " ".join(groups[half:]) + "."
    if form in ("digits_grouped", "fullwidth", "arabic_indic"):
        return " ".join(groups)
    return ", ".join(groups)
