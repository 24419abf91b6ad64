"""Word error rate for tests and benchmarks of the ASR room, with digits and amounts apart.

Whisper writes "$200", "4th" and "94107" where a reference (or a TTS script) may spell the words
out, and punctuates freely. Both sides go through OpenAI's Whisper English normaliser
(``whisper-normalizer``: spelled numbers become digits, "forty dollars" and "$40" both become
``$40``, "five dollars and seventy seven cents" ``$5.77``), then two rules make the classes
comparable:

* a **digit string** that is not an amount is scored digit by digit ("4111 1111", "four one one
  one one one one one", "4.5, 3" read as "4 5 3"), so a card number read in groups and the same
  number written as one token agree, and each wrong digit is one error;
* an **amount** (a token with ``$`` or ``¢``) is one token: it is right or wrong as a whole.

:func:`score` aligns each reference with its hypothesis (jiwer) and charges every edit to the
class of the reference token it touches (an insertion to the class of the inserted token), so a
benchmark can report the error rate on digits and on amounts separately from other words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

import jiwer
from whisper_normalizer.english import EnglishTextNormalizer

TokenClass = Literal["word", "digit", "amount"]
CLASSES: tuple[TokenClass, ...] = ("word", "digit", "amount")
_DIGIT_WORDS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_NUMERIC = re.compile(r"^[\d.,:]+$")
_CENTS_AFTER_DOLLARS = re.compile(r"(\$[\d,]*\d\.\d\d)\s+cents\b", re.IGNORECASE)
"""Whisper writes "$4,995.85 cents": the unit is already given, and the normaliser would read
the whole amount as cents."""


@cache
def _whisper_normalizer() -> EnglishTextNormalizer:
    return EnglishTextNormalizer()


def tokens(text: str) -> list[str]:
    """Normalised tokens of ``text``: words, single digits and whole amounts."""
    out: list[str] = []
    words = _whisper_normalizer()(_CENTS_AFTER_DOLLARS.sub(r"\1", text)).split()
    for i, tok in enumerate(words):
        if tok in _DIGIT_WORDS and (len(words) == 1 or _in_digit_run(words, i)):
            out.append(_DIGIT_WORDS[tok])  # "4 one one": the normaliser leaves some words
        elif _NUMERIC.match(tok):
            out += [ch for ch in tok if ch.isdigit()]
        else:
            out.append(tok)
    return out


def _in_digit_run(words: list[str], i: int) -> bool:
    # "oh" is a digit only between digits; "one" alone may be a pronoun ("the one I want").
    def digit(j: int) -> bool:
        return 0 <= j < len(words) and (words[j] in _DIGIT_WORDS or words[j].isdigit())

    return digit(i - 1) or digit(i + 1)


def normalize(text: str) -> str:
    return " ".join(tokens(text))


def token_class(tok: str) -> TokenClass:
    if "$" in tok or "¢" in tok:
        return "amount"
    return "digit" if tok.isdigit() else "word"


@dataclass
class WerCounts:
    """Edits charged to each token class, and reference tokens of each class."""

    edits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    ref: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))

    def add(self, other: WerCounts) -> None:
        for c in CLASSES:
            self.edits[c] += other.edits[c]
            self.ref[c] += other.ref[c]

    def rate(self, cls: TokenClass | None = None) -> float | None:
        """Error rate of one class (or all); None when the references hold no such token."""
        edits = sum(self.edits.values()) if cls is None else self.edits[cls]
        ref = sum(self.ref.values()) if cls is None else self.ref[cls]
        return round(edits / ref, 4) if ref else None


def score(ref: str, hyp: str) -> WerCounts:
    """Per-class edits of one hypothesis against its reference."""
    r, h = tokens(ref), tokens(hyp)
    counts = WerCounts()
    for tok in r:
        counts.ref[token_class(tok)] += 1
    if not r:
        for tok in h:
            counts.edits[token_class(tok)] += 1
        return counts
    if not h:
        for tok in r:
            counts.edits[token_class(tok)] += 1
        return counts
    out = jiwer.process_words(" ".join(r), " ".join(h))
    for chunk in out.alignments[0]:
        if chunk.type == "equal":
            continue
        if chunk.type == "insert":
            for tok in h[chunk.hyp_start_idx : chunk.hyp_end_idx]:
                counts.edits[token_class(tok)] += 1
        else:  # substitute / delete: one edit per reference token
            for tok in r[chunk.ref_start_idx : chunk.ref_end_idx]:
                counts.edits[token_class(tok)] += 1
    return counts


def corpus_counts(refs: Sequence[str], hyps: Sequence[str]) -> WerCounts:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    total = WerCounts()
    for ref, hyp in zip(refs, hyps, strict=True):
        total.add(score(ref, hyp))
    return total


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate: all edits over all reference tokens, after normalisation."""
    counts = corpus_counts(refs, hyps)
    words = sum(counts.ref.values())
    edits = sum(counts.edits.values())
    return edits / words if words else float(edits > 0)
