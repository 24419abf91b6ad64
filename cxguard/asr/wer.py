"""Word error rate with a small English normaliser, for tests and benchmarks of the ASR room.

Whisper writes "$200", "4th", "94107" and "1980" where a reference may spell the words out, and
capitalises and punctuates freely; comparing raw strings would count those as errors. The
normaliser lowercases, drops punctuation and apostrophes, and spells out numbers (digit by
digit for codes such as ZIPs and card numbers, year style for 1100-1999).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1000, "thousand"))
_ORDINAL = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip
_NUMBER = re.compile(r"(\$?)(\d+(?:,\d{3})*(?:\.\d+)?)(st|nd|rd|th)?(%?)")


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_words(n: int) -> list[str]:
    """Cardinal English words for a non-negative integer: 1234 -> one thousand two hundred
    thirty four."""
    if n == 0:
        return ["zero"]
    words: list[str] = []
    for value, name in _SCALES:
        if n >= value:
            words += [*number_words(n // value), name]
            n %= value
    if n:
        words += _below_thousand(n)
    return words


def _spell(match: re.Match[str]) -> str:
    dollar, digits, suffix, percent = match.groups()
    whole, _, frac = digits.replace(",", "").partition(".")
    grouped = "," in digits
    if (len(whole) >= 5 and not grouped) or (len(whole) > 1 and whole.startswith("0")):
        words = [_ONES[int(d)] for d in whole]  # a code read digit by digit
    elif len(whole) == 4 and 1100 <= int(whole) <= 1999 and not (dollar or grouped):
        head, tail = divmod(int(whole), 100)  # a year: nineteen eighty
        words = number_words(head) + (number_words(tail) if tail else ["hundred"])
        if 0 < tail < 10:
            words[-1:-1] = ["oh"]
    else:
        words = number_words(int(whole))
    if frac:
        words += ["point", *(_ONES[int(d)] for d in frac)]
    if suffix:
        last = words[-1]
        words[-1] = _ORDINAL.get(last, last[:-1] + "ieth" if last.endswith("y") else last + "th")
    if dollar:
        words.append("dollars")
    if percent:
        words.append("percent")
    return " " + " ".join(words) + " "


def normalize(text: str) -> str:
    """Lowercase words without punctuation, numbers spelled out."""
    text = _NUMBER.sub(_spell, text.lower())
    text = text.replace("'", "").replace("’", "")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diag, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (r != h))
    return row[-1]


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate: all edits over all reference words, after :func:`normalize`."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    edits = words = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        r, h = normalize(ref).split(), normalize(hyp).split()
        edits += edit_distance(r, h)
        words += len(r)
    return edits / words if words else float(edits > 0)
