"""What a digit sequence is: a card number, an SSN, a card security code (or, when asked, a
phone number, an account number, a date of birth).

**Card numbers.** A window of the digits that starts and ends where the reader paused (or
any window inside one long group read in a breath) is a card number when it passes the Luhn
check and is either 13-19 digits long with a major-industry digit of a payment card (1
airlines/UATP, 2-6 banking networks, 9 national schemes; not 0, 7 petroleum or 8 health and
telecom) or 12 digits in a Maestro range (50, 56-69). :data:`ISSUERS` names the brand in the
evidence. Prefer a false positive to a leak: ASR mishears digits, so a Luhn-invalid read is
still a card number when it is *card-shaped*: 15 or 16 digits (the lengths of nearly every
card in use) starting with a payment industry digit, or 13-19 digits said next to a card word
("card", "visa", "credit"). The ``card_number`` check fails on those too (one detector): an agent
reading out sixteen digits of a card is the violation whether or not one was misheard.

**SSNs**: 9 digits read 3-2-4 (written ``123-45-6789`` or spoken with those pauses), or
9 digits next to "social"/"SSN"/"tax id", with a structure the SSA issues (area not 000, 666
or 9xx; group not 00; serial not 0000). **CVVs**: a run of 3-4 digits within a few words of
"CVV", "CVC", "security code", "three digit code", "code on the back".

Amounts, dates, times and counts (``Run.quantity``) are never any of these; a North American
phone number read 3-3-4 is never a card or an SSN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from cxguard.pii import vocab as v
from cxguard.pii.text import Atom, Parsed, Run, group_sizes, parse

Kind = Literal["card_number", "ssn", "cvv", "phone", "account_number", "date_of_birth"]
KINDS: tuple[Kind, ...] = ("card_number", "ssn", "cvv", "phone", "account_number", "date_of_birth")
MASKS: dict[Kind, str] = {
    "card_number": "[CARD]",
    "ssn": "[SSN]",
    "cvv": "[CVV]",
    "phone": "[PHONE]",
    "account_number": "[ACCOUNT]",
    "date_of_birth": "[DOB]",
}

ISSUERS: tuple[tuple[str, tuple[tuple[str, str], ...], tuple[int, ...]], ...] = (
    ("UATP", (("1", "1"),), (15,)),
    ("Mir", (("2200", "2204"),), (16, 17, 18, 19)),
    ("Mastercard", (("2221", "2720"), ("51", "55")), (16,)),
    ("American Express", (("34", "34"), ("37", "37")), (15,)),
    ("Diners Club", (("300", "305"), ("36", "36"), ("38", "39")), (14, 15, 16, 17, 18, 19)),
    ("JCB", (("3528", "3589"),), (16, 17, 18, 19)),
    ("Visa", (("4", "4"),), (13, 16, 19)),
    ("Discover", (("6011", "6011"), ("644", "649"), ("65", "65")), (16, 17, 18, 19)),
    ("UnionPay", (("62", "62"),), (16, 17, 18, 19)),
    ("Maestro", (("50", "50"), ("56", "69")), (12, 13, 14, 15, 16, 17, 18, 19)),
    ("Troy", (("9792", "9792"),), (16,)),
)
"""(brand, inclusive prefix ranges, lengths): issuer ranges as published by the networks."""
CARD_INDUSTRY = frozenset("1234569")


@dataclass(frozen=True)
class PiiOptions:
    """What to find beyond card numbers, SSNs and CVVs, and how the sequence window works."""

    phones: bool = False
    account_numbers: bool = False
    dates_of_birth: bool = False
    window_ms: float = 15_000.0
    """Longest pause (stream time) between two pieces of one number read across segments or
    turns of one speaker."""
    min_masked_digits: int = 3
    """Turn texts: a bare digit group this long is masked wherever it stands, as it may be a
    piece of a number read across segments (shorter ones only when they continue one)."""


DEFAULT_OPTIONS = PiiOptions()


@dataclass(frozen=True)
class Finding:
    """One sensitive number. ``start``/``end`` are offsets in the text it was found in (for a
    number read across texts, the part in the latest one); ``evidence`` names it without its
    digits (a card keeps its last four, as PCI DSS allows)."""

    kind: Kind
    start: int
    end: int
    evidence: str
    digits: str = field(default="", repr=False, compare=False)
    """The digits, for the redactor's memory only: never logged or stored."""
    pieces: int = 1
    """How many texts (segments / turns) the number was read across."""

    @property
    def mask(self) -> str:
        return MASKS[self.kind]


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    for brand, ranges, lengths in ISSUERS:
        if len(digits) in lengths:
            for low, high in ranges:
                head = digits[: len(low)]
                if low <= head <= high:
                    return brand
    return None


def valid_card(digits: str) -> bool:
    n = len(digits)
    if not luhn_valid(digits):
        return False
    if 13 <= n <= 19:
        return digits[0] in CARD_INDUSTRY
    return n == 12 and card_brand(digits) == "Maestro"


def valid_ssn(digits: str) -> bool:
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


Near = Callable[[str, int, int, int, int], bool]
"""``near(kind, before, after, lo, hi)``: is a ``kind`` context phrase at most ``before``
content words ahead of atoms ``lo..hi`` of the sequence, or ``after`` words behind them?"""
CARD_REACH = (8, 4)
BANKING_NETWORKS = frozenset("23456")
"""First digits of the banking networks (Mastercard 2/5, Amex/Diners 3, Visa 4, Discover 6):
a Luhn-valid number there is a card whatever label it is read with."""
SSN_REACH = (8, 4)
CVV_REACH = (6, 3)
OTHER_REACH = (6, 3)
ACCOUNT_REACH = (6, 0)
"""Account numbers are announced before they are read ("account number is …")."""


@dataclass(frozen=True)
class Hit:
    kind: Kind
    lo: int
    hi: int
    """First and last atom (inclusive) of the sequence that hold it."""
    evidence: str
    digits: str


class _Digits:
    """The digits of a sequence of atoms, with the atom and group boundaries."""

    def __init__(self, atoms: Sequence[Atom]) -> None:
        self.atoms = tuple(atoms)
        self.text = "".join(a.digits for a in atoms)
        self.atom_ends: list[int] = []
        pos = 0
        for a in atoms:
            pos += len(a.digits)
            self.atom_ends.append(pos)
        self.groups = group_sizes(self.atoms)
        self.bounds = [0]
        for size in self.groups:
            self.bounds.append(self.bounds[-1] + size)

    def atoms_of(self, start: int, end: int) -> tuple[int, int]:
        lo = next(k for k, e in enumerate(self.atom_ends) if e > start)
        hi = next(k for k, e in enumerate(self.atom_ends) if e >= end)
        return lo, hi

    def windows(self, lengths: range) -> list[tuple[int, int]]:
        """Windows between pauses, plus every window inside a group read in one breath."""
        found: set[tuple[int, int]] = set()
        for a, start in enumerate(self.bounds):
            for end in self.bounds[a + 1 :]:
                if end - start > lengths.stop - 1:
                    break
                if end - start in lengths:
                    found.add((start, end))
        for g, size in enumerate(self.groups):
            if size > lengths.start:
                base = self.bounds[g]
                for n in lengths:
                    found.update((base + s, base + s + n) for s in range(size - n + 1))
        return sorted(found, key=lambda w: (w[0] - w[1], w[0]))


def _merge(windows: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    merged: list[list[tuple[int, int]]] = []
    for w in sorted(windows):
        if merged and w[0] < max(e for _, e in merged[-1]):
            merged[-1].append(w)
        else:
            merged.append([w])
    return merged


def _cards(d: _Digits, near: Near) -> list[Hit]:
    valid = [w for w in d.windows(range(12, 20)) if valid_card(d.text[w[0] : w[1]])]
    last = len(d.atoms) - 1
    if (
        valid
        and all(d.text[s] not in BANKING_NETWORKS for s, _ in valid)
        and near("identifier", *CARD_REACH[:1], 0, 0, last)
        and not near("card", *CARD_REACH, 0, last)
    ):
        return []  # "order number 1135…": an identifier outside the banking ranges
    hits = []
    for cluster in _merge(valid):
        best = max(cluster, key=lambda w: (w[1] - w[0], -w[0]))
        number = d.text[best[0] : best[1]]
        brand = card_brand(number)
        where = f"{brand} range" if brand else f"industry digit {number[0]}"
        first, last = min(s for s, _ in cluster), max(e for _, e in cluster)
        lo, hi = d.atoms_of(first, first + 1)[0], d.atoms_of(last - 1, last)[1]
        evidence = f"card number ending {number[-4:]} ({len(number)} digits, Luhn-valid, {where})"
        hits.append(Hit("card_number", lo, hi, evidence, number))
    if hits:
        return hits
    n, digits = len(d.text), d.text
    if 13 <= n <= 19 and near("card", *CARD_REACH, 0, len(d.atoms) - 1):
        shaped: tuple[int, int] | None = (0, n)
    else:  # 15-16 digits from the run's start to a pause: more digits after it do not undo it
        shaped = next(
            ((0, e) for e in d.bounds[1:] if e in (15, 16) and digits[0] in CARD_INDUSTRY), None
        )
    if shaped is not None:
        size = shaped[1]
        evidence = (
            f"card-shaped number ({size} digits, not Luhn-valid: a card number ASR misheard "
            "is still one)"
        )
        hi = d.atoms_of(size - 1, size)[1]
        return [Hit("card_number", 0, hi, evidence, digits[:size])]
    return []


def _ssns(d: _Digits, near: Near) -> list[Hit]:
    hits: list[Hit] = []
    context = None
    last = len(d.atoms) - 1
    for a, start in enumerate(d.bounds):
        for b in range(a + 1, len(d.bounds)):
            end = d.bounds[b]
            if end - start > 9:
                break
            number = d.text[start:end]
            if end - start != 9 or not valid_ssn(number):
                continue
            if d.groups[a:b] == (3, 2, 4):
                how = "read in 3-2-4 groups"
            else:
                context = near("ssn", *SSN_REACH, 0, last) if context is None else context
                if not context:
                    continue
                how = "9 digits said with 'social' / 'SSN'"
            lo, hi = d.atoms_of(start, start + 1)[0], d.atoms_of(end - 1, end)[1]
            if not any(h.lo <= hi and lo <= h.hi for h in hits):
                hits.append(Hit("ssn", lo, hi, f"SSN ({how}, valid area/group/serial)", number))
    return hits


def sequence_hits(
    atoms: Sequence[Atom], near: Near, options: PiiOptions, *, phone: bool = False
) -> list[Hit]:
    """Every sensitive number in one digit sequence, not overlapping, cards first. What is
    left around a number is searched again on its own (so masking a number never reveals
    another one to a second pass: redaction is one pass, and equals the check)."""
    return _hits(tuple(atoms), 0, near, options, phone, depth=0)


def _hits(
    atoms: tuple[Atom, ...], offset: int, near: Near, options: PiiOptions, phone: bool, depth: int
) -> list[Hit]:
    if depth:  # what is left beside a number is a run of its own: trim its homophones
        while atoms and atoms[0].weak == "edge":
            atoms, offset = atoms[1:], offset + 1
        while atoms and atoms[-1].weak == "edge":
            atoms = atoms[:-1]
        if not atoms:
            return []

    def here(kind: str, before: int, after: int, lo: int, hi: int) -> bool:
        return near(kind, before, after, lo + offset, hi + offset)

    found = _kinds(atoms, here, options, phone)
    if not found or depth > 3:
        return [Hit(h.kind, h.lo + offset, h.hi + offset, h.evidence, h.digits) for h in found]
    out: list[Hit] = []
    start = 0
    for h in sorted(found, key=lambda h: h.lo):
        if h.lo > start:
            out += _hits(atoms[start : h.lo], offset + start, near, options, phone, depth + 1)
        out.append(Hit(h.kind, h.lo + offset, h.hi + offset, h.evidence, h.digits))
        start = h.hi + 1
    if start < len(atoms):
        out += _hits(atoms[start:], offset + start, near, options, phone, depth + 1)
    return out


def _kinds(atoms: tuple[Atom, ...], near: Near, options: PiiOptions, phone: bool) -> list[Hit]:
    d = _Digits(atoms)
    n, last = len(d.text), len(atoms) - 1
    hits: list[Hit] = []
    if not phone:
        hits += _cards(d, near)
        hits += [h for h in _ssns(d, near) if not any(c.lo <= h.hi and h.lo <= c.hi for c in hits)]
        if not hits and n in (3, 4) and near("cvv", *CVV_REACH, 0, last):
            hits.append(Hit("cvv", 0, last, f"card security code ({n} digits)", d.text))
    if hits:
        return hits
    said_phone = 7 <= n <= 15 and near("phone", *OTHER_REACH, 0, last)
    if options.phones and phone:
        return [Hit("phone", 0, last, f"phone number ({n} digits)", d.text)]
    if options.account_numbers and 6 <= n <= 17 and near("account", *ACCOUNT_REACH, 0, last):
        return [Hit("account_number", 0, last, f"account number ({n} digits)", d.text)]
    if options.phones and said_phone:
        return [Hit("phone", 0, last, f"phone number ({n} digits)", d.text)]
    return []


def atoms_near(parsed: Parsed, atoms: Sequence[Atom]) -> Near:
    """``Near`` for a sequence of atoms of one text."""

    def near(kind: str, before: int, after: int, lo: int, hi: int) -> bool:
        return parsed.near(kind, atoms[lo].first_tok, atoms[hi].last_tok, before, after)

    return near


def findings(text: str, options: PiiOptions = DEFAULT_OPTIONS) -> list[Finding]:
    """Every sensitive number in ``text`` alone, in order, not overlapping."""
    return list(_findings(text, options))


@lru_cache(maxsize=2048)
def _findings(text: str, options: PiiOptions) -> tuple[Finding, ...]:
    # Cached: the check, the redactor and the sinks' last pass read the same texts.
    parsed = parse(text)
    found: list[Finding] = []
    for run in parsed.runs:
        if not run.bare:
            continue
        near = atoms_near(parsed, run.atoms)
        for hit in _with_crumbs(run, sequence_hits(run.atoms, near, options, phone=run.phone)):
            start, end = run.atoms[hit.lo].start, run.atoms[hit.hi].end
            evidence = f"{hit.evidence} at chars {start}-{end}"
            found.append(Finding(hit.kind, start, end, evidence, hit.digits))
    if options.dates_of_birth:
        found += _dates_of_birth(parsed, found)
    return tuple(sorted(found, key=lambda f: f.start))


def _with_crumbs(run: Run, hits: list[Hit]) -> list[Hit]:
    """Card hits grown over fewer than 4 digits left between them and the run's ends (or the
    next hit): what is left of a misheard or over-long read is part of the number."""
    hits = sorted(hits, key=lambda h: h.lo)
    out: list[Hit] = []
    for k, h in enumerate(hits):
        lo, hi = h.lo, h.hi
        if h.kind == "card_number":
            floor = out[-1].hi + 1 if out else 0
            ceiling = hits[k + 1].lo - 1 if k + 1 < len(hits) else len(run.atoms) - 1
            if sum(len(a.digits) for a in run.atoms[floor:lo]) < 4:
                lo = floor
            if sum(len(a.digits) for a in run.atoms[hi + 1 : ceiling + 1]) < 4:
                hi = ceiling
        out.append(Hit(h.kind, lo, hi, h.evidence, h.digits))
    return out


def _dates_of_birth(parsed: Parsed, taken: list[Finding]) -> list[Finding]:
    """Date material (numbers, month names, ordinals, dates) just after 'born' / 'date of
    birth' / 'DOB'."""
    toks = parsed.tokens
    found: list[Finding] = []
    for kind, _, last in parsed.contexts:
        if kind != "dob":
            continue
        k, start, end, numbers = last + 1, -1, -1, 0
        while k < len(toks) and k <= last + 12:
            t = toks[k]
            is_number = t.kind in ("num", "quant", "mixed") or (
                t.kind == "word" and (t.text in v.UNITS or t.text in v.TEENS or t.text in v.TENS)
            )
            dateish = is_number or t.text in v.MONTHS or t.text in (",", "/", "-", "of", "the")
            if not dateish and start < 0 and t.kind == "word" and k <= last + 4:
                k += 1  # "born on", "birth is"
                continue
            if not dateish:
                break
            if is_number or t.text in v.MONTHS:
                start = t.start if start < 0 else start
                end, numbers = t.end, numbers + is_number
            k += 1
        if numbers and not any(f.start < end and start < f.end for f in taken + found):
            found.append(
                Finding("date_of_birth", start, end, f"date of birth at chars {start}-{end}")
            )
    return found
