"""Text to tokens: normalisation (NFKC per character, casefolded, every Unicode decimal digit
as its ASCII digit, with a map back to the original offsets) and one pass of tokenization.

Tokens are numerals, words, punctuation, mask tokens (``[CARD]`` …), *quantity* tokens (ISO
dates, slashed dates, clock times, IP addresses, ``$12.50``, ``1,250``, decimals: never digit
sequences) and *mixed* tokens (``A1B2``, ``15th``, IBANs, call ids: not spoken digits either).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

TokenKind = Literal["num", "word", "punct", "mask", "quant", "mixed"]

_QUANT = (
    r"\d{4}-\d{1,2}-\d{1,2}(?:[ t]\d{1,2}:\d{2}(?::\d{2})?)?"  # ISO date [time]
    r"|\d{1,2}/\d{1,2}/\d{2,4}|\d{4}/\d{1,2}/\d{1,2}|\d{1,2}-\d{1,2}-\d{4}"  # dates
    r"|\d{1,2}:\d{2}(?::\d{2})?"  # clock time
    r"|\d{1,3}(?:\.\d{1,3}){3}"  # IPv4
    r"|[$£€¥₹₩₽]\s?\d[\d,]*(?:\.\d+)?"  # money with its symbol
    r"|\d{1,3}(?:,\d{3})+(?:\.\d+)?"  # 1,250 / 1,234.56
    r"|\d{1,6}\.\d{1,2}(?!\.\d)"  # 45.20, 3.5
)
_SPECIAL = re.compile(
    r"(?P<mask>\[(?:card|ssn|cvv|digits|phone|account|dob|redacted)\])"
    rf"|(?P<quant>(?<![\w.,:/-])(?:{_QUANT})(?![\w:/]|[.,-]\d))"
    r"|(?P<ampm>\b[ap]\.\s?m\.?)"
)
"""Tokens found first, where the text has digits / brackets / "a.m." at all."""
_DIGIT = re.compile(r"\d")
_SPECIAL_KINDS: dict[str, TokenKind] = {"mask": "mask", "quant": "quant", "ampm": "word"}
_PLAIN = re.compile(r"[^\W_]+(?:['’][^\W\d_]+)*|\S|\n")
"""Everything else: alphanumeric words (classified afterwards), punctuation, line breaks."""


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str
    """Normalised form (casefolded; "a.m." is "am")."""
    start: int
    end: int
    """Offsets in the original text."""
    nstart: int
    """Offset in the normalised text (context patterns are matched there)."""


def normalize(text: str) -> tuple[str, list[int] | None]:
    """``text`` NFKC-normalised and casefolded, Unicode digits as ASCII, with the original
    offset of every normalised character (None: the same offsets, for ASCII text)."""
    if text.isascii():
        return text.lower(), None
    out: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        if ch.isdecimal():
            piece = str(unicodedata.decimal(ch))
        else:
            piece = unicodedata.normalize("NFKC", ch).casefold()
        out.append(piece)
        where.extend([i] * len(piece))
    return "".join(out), where


def tokenize(text: str) -> tuple[str, tuple[Token, ...]]:
    norm, where = normalize(text)

    def orig(a: int, b: int) -> tuple[int, int]:
        if where is None:
            return a, b
        return where[a], where[b - 1] + 1

    specials: list[tuple[int, int, TokenKind, str]] = []
    if any(c in norm for c in "[0123456789."):
        for m in _SPECIAL.finditer(norm):
            group = m.lastgroup or "quant"
            word = m.group()[0] + "m" if group == "ampm" else m.group()  # "p.m." is "pm"
            specials.append((m.start(), m.end(), _SPECIAL_KINDS[group], word))
    tokens: list[Token] = []
    pos = 0
    for a, b, kind, word in [*specials, (len(norm), len(norm), "punct", "")]:
        for m in _PLAIN.finditer(norm, pos, a):
            piece = m.group()
            if piece.isdigit():
                plain: TokenKind = "num"
            elif not piece[0].isalnum():
                plain = "punct"
            elif _DIGIT.search(piece):
                plain = "mixed"
            else:
                plain = "word"
            start, end = orig(m.start(), m.end())
            tokens.append(Token(plain, piece, start, end, m.start()))
        if b > a:
            start, end = orig(a, b)
            tokens.append(Token(kind, word, start, end, a))
        pos = b
    return norm, tuple(tokens)
