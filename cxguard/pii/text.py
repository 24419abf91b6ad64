"""From a transcript to *digit runs*: the numbers in it, however ASR wrote them.

The text is first cut into tokens (:mod:`cxguard.pii.tokens`: "４１１１" and "٤١١١" read as
"4111"; dates, times, amounts and ids are tokens of their own).

A run is a stretch of digit *atoms* (a numeral, or a number word: units, "oh"/"o"/"nought",
"niner", teens, tens with their unit, "double"/"triple" X, X "hundred") joined by soft gaps:
spaces, group punctuation (``, . - / :`` …), fillers ("uh", "um", "dash") and up to three
connector words ("and", "then", "okay"). Homophones ("for", "to", "too", "won", "ate") are
digits only between two others; a leading "oh" is an interjection. Anything else ends a run.

Each run knows its *groups* (where the reader paused: punctuation, a filler, a connector, or a
written numeral of its own), whether it touches the start/end of its text through soft
material only (so it may continue in the next segment), and whether it is a *quantity*: an
amount, percentage, time, date, count ("30 days") or cardinal ("two hundred", "forty
thousand"), which is never treated as a digit sequence.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from cxguard.pii import vocab as v
from cxguard.pii.tokens import Token, tokenize

Weak = Literal["", "edge", "lead"]
"""``edge``: a homophone (dropped at both ends of a run); ``lead``: "oh"/"o" (dropped at the
start only, and only when a pause follows it: "Oh, 4111" but "oh seven eight" is 078)."""

_HYPHENS = frozenset("-‐‑")
MAX_QUANTITY_DIGITS = 6
"""Longer digit runs are never amounts, dates or counts, whatever word follows them."""


@dataclass(frozen=True)
class Atom:
    digits: str
    start: int
    end: int
    group: int
    first_tok: int
    last_tok: int
    weak: Weak = ""
    written: bool = False


@dataclass(frozen=True)
class Run:
    atoms: tuple[Atom, ...]
    lead: tuple[Atom, ...]
    """Homophones trimmed off its front: digits only if the run continues an earlier one."""
    quantity: str | None
    phone: bool
    at_start: bool
    """Only soft material between the start of the text and this run."""
    at_end: bool
    weak_only: bool = False
    """Nothing but a homophone or a lone "oh" ("for", "Oh."): a digit only when it
    continues a number from the speaker's previous text, never one on its own."""

    @property
    def start(self) -> int:
        return self.atoms[0].start

    @property
    def end(self) -> int:
        return self.atoms[-1].end

    @property
    def first_tok(self) -> int:
        return (self.lead or self.atoms)[0].first_tok

    @property
    def last_tok(self) -> int:
        return self.atoms[-1].last_tok

    @property
    def digits(self) -> str:
        return "".join(a.digits for a in self.atoms)

    @property
    def groups(self) -> tuple[int, ...]:
        return group_sizes(self.atoms)

    @property
    def candidate(self) -> bool:
        """May be (part of) a digit sequence: not an amount, date, time or count."""
        return self.quantity is None

    @property
    def bare(self) -> bool:
        """A digit sequence in its own right (not a quantity, not a lone homophone)."""
        return self.quantity is None and not self.weak_only


def group_sizes(atoms: tuple[Atom, ...]) -> tuple[int, ...]:
    sizes: list[int] = []
    for k, atom in enumerate(atoms):
        if k and atoms[k - 1].group == atom.group:
            sizes[-1] += len(atom.digits)
        else:
            sizes.append(len(atom.digits))
    return tuple(sizes)


@dataclass(frozen=True)
class Parsed:
    text: str
    tokens: tuple[Token, ...]
    runs: tuple[Run, ...]
    contexts: tuple[tuple[str, int, int], ...]
    """(kind, first token, last token) of each context phrase ("security code", "visa")."""
    hard: tuple[int, ...] = (0,)
    """``hard[i]``: content words among ``tokens[:i]`` (distances to context phrases are
    counted in these, so masking a number never moves a phrase closer to another)."""

    def near(self, kind: str, first: int, last: int, before: int, after: int) -> bool:
        """A ``kind`` context phrase ends at most ``before`` content words ahead of tokens
        ``first..last``, starts at most ``after`` content words behind them, or overlaps."""
        hard = self.hard
        for k, t0, t1 in self.contexts:
            if k != kind:
                continue
            if t1 < first:
                if hard[first] - hard[t1 + 1] <= before:
                    return True
            elif t0 > last:
                if hard[t0] - hard[last + 1] <= after:
                    return True
            else:
                return True
        return False


def _is_content(tok: Token) -> bool:
    if tok.kind in ("quant", "mixed"):
        return True
    w = tok.text
    return tok.kind == "word" and not (
        _is_soft(tok)
        or w in v.UNITS
        or w in v.TEENS
        or w in v.TENS
        or w in v.REPEAT
        or w == "hundred"
    )


def _is_soft(tok: Token) -> bool:
    if tok.kind == "punct":
        return tok.text in v.SOFT_PUNCT
    return tok.kind == "word" and (
        tok.text in v.FILLERS or tok.text in v.SOFT_WORDS or tok.text in v.WEAK
    )


class _Builder:
    """Walks the tokens once, collecting atoms into raw runs."""

    def __init__(self, tokens: tuple[Token, ...]) -> None:
        self.tokens = tokens
        self.raw: list[tuple[list[Atom], bool, bool]] = []  # atoms, hundred, cardinal
        self.atoms: list[Atom] = []
        self.group = 0
        self.pause = False
        self.soft_words = 0
        self.hundred = False
        self.cardinal = False

    def close(self) -> None:
        if self.atoms:
            self.raw.append((self.atoms, self.hundred, self.cardinal))
        self.atoms, self.pause, self.soft_words = [], False, 0
        self.hundred = self.cardinal = False

    def add(
        self, digits: str, first: int, last: int, weak: Weak = "", written: bool = False
    ) -> None:
        toks = self.tokens
        # A pause starts a group; so does a written number of several digits ("4111 1111"),
        # but single written digits ("4 1 1 1") are read like digit words.
        prev = self.atoms[-1] if self.atoms else None
        if prev is not None and (
            self.pause or (written and len(digits) > 1) or (prev.written and len(prev.digits) > 1)
        ):
            self.group += 1
        self.atoms.append(
            Atom(digits, toks[first].start, toks[last].end, self.group, first, last, weak, written)
        )
        self.pause, self.soft_words = False, 0

    def word(self, i: int) -> int:
        """Handle the word at ``i``; returns how many tokens it used."""
        toks, w = self.tokens, self.tokens[i].text
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if w in v.TENS:
            j = i + 2 if nxt is not None and nxt.text in _HYPHENS else i + 1
            unit = toks[j] if j < len(toks) else None
            if unit is not None and unit.kind == "word" and v.UNITS.get(unit.text, "0") != "0":
                self.add(v.TENS[w] + v.UNITS[unit.text], i, j)
                return j - i + 1
            self.add(v.TENS[w] + "0", i, i)
        elif w in v.TEENS:
            self.add(v.TEENS[w], i, i)
        elif w in v.UNITS:
            self.add(v.UNITS[w], i, i, "lead" if w in v.LEAD_WEAK else "")
        elif (
            w in v.REPEAT
            and nxt is not None
            and (
                (nxt.kind == "word" and nxt.text in v.UNITS)
                or (nxt.kind == "num" and len(nxt.text) == 1)
            )
        ):
            digit = v.UNITS.get(nxt.text, nxt.text)
            self.add(digit * v.REPEAT[w], i, i + 1)
            return 2
        elif w in v.WEAK:
            self.add(v.WEAK[w], i, i, "edge")
        elif w == "hundred" and self.atoms:
            last = self.atoms[-1]
            self.atoms[-1] = Atom(
                last.digits + "00", last.start, toks[i].end, last.group, last.first_tok, i
            )
            self.hundred = True
        elif w in v.CARDINALS and self.atoms:
            self.cardinal = True
            self.close()
        elif w in v.FILLERS:
            self.pause = True
        elif w in v.SOFT_WORDS and self.atoms and self.soft_words < v.MAX_SOFT_WORDS:
            self.soft_words += 1
            self.pause = True
        else:
            self.close()
        return 1

    def build(self) -> list[tuple[list[Atom], bool, bool]]:
        i = 0
        while i < len(self.tokens):
            tok = self.tokens[i]
            if tok.kind == "num":
                self.add(tok.text, i, i, written=True)
            elif tok.kind == "word":
                i += self.word(i)
                continue
            elif tok.kind == "punct" and tok.text in v.SOFT_PUNCT:
                self.pause = True
            else:
                self.close()
            i += 1
        self.close()
        return self.raw


def _phone_at(atoms: list[Atom], k: int) -> int:
    """Atoms from ``k`` that read as a North American phone number ([1] NXX NXX XXXX, in
    groups), or 0. No card is grouped 3-3-4."""
    sizes: list[tuple[int, int]] = []  # (group size, atoms in group)
    j = k
    while j < len(atoms) and len(sizes) < 4:
        group, size, n = atoms[j].group, 0, 0
        while j < len(atoms) and atoms[j].group == group:
            size, n, j = size + len(atoms[j].digits), n + 1, j + 1
        sizes.append((size, n))
    lead = 1 if sizes and sizes[0][0] == 1 and atoms[k].digits == "1" else 0
    shape = [s for s, _ in sizes[lead : lead + 3]]
    if shape != [3, 3, 4]:
        return 0
    used = sum(n for _, n in sizes[: lead + 3])
    digits = "".join(a.digits for a in atoms[k : k + used])[lead:]
    return used if digits[0] in "23456789" and digits[3] in "23456789" else 0


def _split_phones(atoms: list[Atom]) -> list[tuple[list[Atom], bool]]:
    parts: list[tuple[list[Atom], bool]] = []
    start = k = 0
    while k < len(atoms):
        if k == 0 or atoms[k - 1].group != atoms[k].group:
            used = _phone_at(atoms, k)
            if used:
                parts += [(atoms[start:k], False), (atoms[k : k + used], True)]
                start = k = k + used
                continue
        k += 1
    parts.append((atoms[start:], False))
    return [(p, phone) for p, phone in parts if p]


def _neighbour(tokens: tuple[Token, ...], index: int) -> Token | None:
    return tokens[index] if 0 <= index < len(tokens) else None


def _quantity(
    tokens: tuple[Token, ...], atoms: list[Atom], hundred: bool, cardinal: bool, hemmed: bool
) -> str | None:
    digits = "".join(a.digits for a in atoms)
    if cardinal or (hundred and len(digits) <= 6):
        return "cardinal"
    if len(digits) > MAX_QUANTITY_DIGITS:
        return None  # "card 4135 6168 0156 2540 transactions" is no count
    before = _neighbour(tokens, atoms[0].first_tok - 1)
    after = _neighbour(tokens, atoms[-1].last_tok + 1)
    b = before.text if before is not None else ""
    a = after.text if after is not None else ""
    if b in v.CURRENCY_SYMBOLS or a in v.CURRENCY_WORDS:
        return "money"
    if a in v.PERCENT_WORDS:
        return "percent"
    if a in v.TIME_WORDS:
        return "time"
    if a in v.MONTHS or b in v.MONTHS or a in v.WEEKDAYS:
        return "date"
    year = len(digits) == 4 and 1900 <= int(digits) <= 2099
    if year and (b in v.YEAR_LEADS or (hemmed and len(atoms) == 1 and atoms[0].written)):
        return "date"  # "in 1977", "a 2015 pop song" (words on both sides: no piece of a read)
    if a in v.UNIT_WORDS:
        return "count"
    return None


def _edges(tokens: tuple[Token, ...], first: int, last: int) -> tuple[bool, bool]:
    return (
        all(_is_soft(t) for t in tokens[:first]),
        all(_is_soft(t) for t in tokens[last + 1 :]),
    )


def _runs(tokens: tuple[Token, ...]) -> tuple[Run, ...]:
    runs: list[Run] = []
    for atoms, hundred, cardinal in _Builder(tokens).build():
        lead: list[Atom] = []
        while atoms and (
            atoms[0].weak == "edge"
            or (atoms[0].weak == "lead" and (len(atoms) == 1 or atoms[1].group != atoms[0].group))
        ):
            lead.append(atoms.pop(0))
        trimmed: list[Atom] = []
        while atoms and atoms[-1].weak == "edge":
            trimmed.insert(0, atoms.pop())
        if not atoms:
            weak = (*lead, *trimmed)
            at_start, at_end = _edges(tokens, weak[0].first_tok, weak[-1].last_tok)
            runs.append(Run(weak, (), None, False, at_start, at_end, weak_only=True))
            continue
        lead = lead[-1:] if lead and lead[-1].weak == "edge" else []
        for k, (part, phone) in enumerate(_split_phones(atoms)):
            part_lead = tuple(lead) if k == 0 else ()
            first = (part_lead or part)[0].first_tok
            at_start, at_end = _edges(tokens, first, part[-1].last_tok)
            hemmed = not at_start and not at_end
            quantity = _quantity(tokens, part, hundred, cardinal, hemmed)
            runs.append(Run(tuple(part), part_lead, quantity, phone, at_start, at_end))
    return tuple(runs)


def _contexts(norm: str, tokens: tuple[Token, ...]) -> tuple[tuple[str, int, int], ...]:
    blanked = v.MASK_RE.sub(lambda m: " " * len(m.group()), norm)
    starts = [t.nstart for t in tokens]
    found: list[tuple[str, int, int]] = []
    for kind, pattern in v.CONTEXT.items():
        for m in pattern.finditer(blanked):
            first = bisect.bisect_right(starts, m.start()) - 1
            last = bisect.bisect_left(starts, m.end()) - 1
            found.append((kind, max(first, 0), max(last, 0)))
    return tuple(found)


_MAYBE_NUMBER = re.compile(
    r"\d|\b(?:" + "|".join(sorted({*v.UNITS, *v.TEENS, *v.TENS}, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)


@lru_cache(maxsize=2048)
def parse(text: str) -> Parsed:
    """The tokens, runs and context phrases of ``text`` (cached: the same turn text is read
    by the check, the redactor and the sequence window)."""
    if text.isascii() and _MAYBE_NUMBER.search(text) is None:
        return Parsed(text, (), (), ())  # no runs: its context phrases could serve nothing
    norm, tokens = tokenize(text)
    hard = [0]
    for tok in tokens:
        hard.append(hard[-1] + _is_content(tok))
    return Parsed(text, tokens, _runs(tokens), _contexts(norm, tokens), tuple(hard))
