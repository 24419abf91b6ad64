"""What the semantic classifiers read: a turn with every money amount written one way.

Whisper writes one spoken amount in many shapes — "$1,274.55", "one thousand two hundred and
seventy four dollars and fifty five cents", "22,300 and 26,000 and 22,000" for "twenty-two
thousand three hundred twenty-six dollars and twenty-two cents", "$15,1 hundred and $18" — and
redaction may have turned some of its digits into ``[DIGITS]``. No label depends on the value,
but a head that met runs of figures joined by "and" only in split-payment offers reads every
garbled balance as one. So before scoring, each amount becomes one placeholder, and the words
around it ("pay … now and the rest next month") are what the head judges.

An amount is a run of figures, number words and ``[DIGITS]`` joined by spaces, commas or
"and" that names a currency (``$ £ € %``, dollars, cents, bucks, pounds, euros, pence,
percent), holds a ``[DIGITS]`` mask, or has at least two figures or three number words (a
number read out and broken up by the ASR). A lone figure or a count in words ("three
payments", "one moment", "twenty five days") is left as it is, and so are times (9:30),
ordinals (3rd, 15th) and tokens inside words.
"""

from __future__ import annotations

import re

AMOUNT = "[AMOUNT]"

_WORDS = (
    "zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    "fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|"
    "eighty|ninety|hundred|thousand|million|billion|point"
)
_WORD = rf"(?:{_WORDS})(?:-(?:{_WORDS}))?(?![\w-])"
# A figure: digits with thousands commas / a decimal part; not a time, ordinal or part of a word.
_FIGURE = r"[$£€]?\s?\d+(?:,\d+)*(?:\.\d+)?(?![\d:]|(?:st|nd|rd|th)\b|[a-z])%?"
_CURRENCY = r"(?:dollars?|cents?|bucks?|pounds?|euros?|pence|percent)(?![\w-])|[$£€%]"
_MASK = r"\[DIGITS\]"
_TOKEN = rf"(?:{_MASK}|{_FIGURE}|{_WORD}|{_CURRENCY})"
_JOIN = r"(?:\s*,\s*(?:and\s+)?|\s+and\s+|\s+)"
_RUN = re.compile(rf"(?<![\w:.,$£€-]){_TOKEN}(?:{_JOIN}{_TOKEN})*", re.IGNORECASE)
_HAS_CURRENCY = re.compile(_CURRENCY, re.IGNORECASE)
_FIGURES = re.compile(rf"(?<![\w]){_FIGURE}", re.IGNORECASE)
_NUMBER_WORDS = re.compile(rf"\b{_WORD}", re.IGNORECASE)


def _amount(run: str) -> bool:
    if "[DIGITS]" in run:
        return True
    if _HAS_CURRENCY.search(run):
        return bool(_FIGURES.search(run) or _NUMBER_WORDS.search(run))
    return len(_FIGURES.findall(run)) >= 2 or len(_NUMBER_WORDS.findall(run)) >= 3


def collapse_amounts(text: str) -> str:
    """``text`` with each money amount (module docstring) replaced by ``[AMOUNT]``."""

    def replace(match: re.Match[str]) -> str:
        run = match.group(0)
        return AMOUNT if _amount(run) else run

    return _RUN.sub(replace, text)
