"""Redaction of card numbers, SSNs and security codes, written and spoken (Whisper style)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxguard.evidence.redaction import find_card_numbers, find_sensitive, luhn_ok, redact

DATA = Path(__file__).parent / "data" / "presidio_pii_subset.json"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _presidio() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(DATA.read_text(encoding="utf-8"))
    return records


def _spans(kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (r["full_text"], s) for r in _presidio() for s in r["spans"] if s["entity_type"] == kind
    ]


def _covered(text: str, start: int, end: int) -> bool:
    return any(f.start <= start and f.end >= end for f in find_sensitive(text))


def _speak(digits: str, rng: random.Random, group: int = 0) -> str:
    """``digits`` the way Whisper writes a caller reading them: words, "oh", "double",
    "triple", some numerals mixed in, commas between groups of ``group`` digits."""
    parts: list[str] = []
    i = 0
    while i < len(digits):
        d = digits[i]
        run = 1
        while i + run < len(digits) and digits[i + run] == d and run < 3:
            run += 1
        if group and i and i % group == 0:
            parts[-1] += ","
        if run >= 2 and rng.random() < 0.5 and not (group and (i % group) + run > group):
            word = rng.choice(["oh", "zero"]) if d == "0" else WORDS[int(d)]
            parts.append(f"{'triple' if run == 3 else 'double'} {word}")
            i += run
            continue
        if rng.random() < 0.15:
            parts.append(d)
        else:
            parts.append(rng.choice(["oh", "zero"]) if d == "0" else WORDS[int(d)])
        i += 1
    return " ".join(parts)


# --------------------------------------------------------------------------- hand-written cases


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my card is 4111 1111 1111 1111 thanks", "my card is [CARD] thanks"),
        ("4111-1111-1111-1111", "[CARD]"),
        ("it's 4111111111111111.", "it's [CARD]."),
        ("four one one one one one one one one one one one one one one one", "[CARD]"),
        ("four double one one triple one triple one triple one triple one", "[CARD]"),
        ("Four one one one, one one one one, one one one one, one one one one.", "[CARD]."),
        ("4111 one one one one one one one one one one one one", "[CARD]"),
        ("forty one eleven eleven eleven eleven eleven eleven eleven", "[CARD]"),
        ("amex 3782 822463 10005 please", "amex [CARD] please"),
        ("uh my card is four one one one uh one one one one one one one one one one one one", None),
        # One mis-heard digit (Luhn fails) still goes when the caller speaks of a card.
        ("card number 4111 1111 1111 1112", "card number [CARD]"),
        ("What is the limit for card 584528792610?", "What is the limit for card [CARD]?"),
        ("My SSN is 123-45-6789.", "My SSN is [SSN]."),
        ("ssn 123 45 6789", "ssn [SSN]"),
        ("my social is one two three four five six seven eight nine", "my social is [SSN]"),
        ("it's one two three, four five, six seven eight nine", "it's [SSN]"),
        ("my SSN is 078051120", "my SSN is [SSN]"),
        ("the security code is 123", "the security code is [CVV]"),
        ("CVV four five six", "CVV [CVV]"),
        ("and the CVC, uh, is 7 3 1", "and the CVC, uh, is [CVV]"),
        ("456 is my CVV", "[CVV] is my CVV"),
        ("amex 4 digit code four four three two", "amex 4 digit code [CVV]"),
    ],
)
def test_redacts(text: str, expected: str | None) -> None:
    out = redact(text)
    if expected is not None:
        assert out == expected
    assert not re.search(r"\d{4}", out)
    assert "one one one one" not in out


@pytest.mark.parametrize(
    "text",
    [
        "call me on 905-674-3793 or (602) 272-9781",
        "+1-984-182-0190 ext 459",
        "born on 12/05/1985, zip 94107-1234",
        "the meeting is 2024-01-15 at 12:30",
        "you owe $1,234.56 and 14 cents, due in 30 days",
        "The amount is 1,500,000,000,000 dollars",
        "Oh, one more thing, I waited for two hours on hold",
        "my account number is 12345678901234",  # no card words: not a card
        "ticket 123-45-678 and order 99 12 3456",
        "the code is 123",  # not a security code context
        "card ending in 1111",  # last four are not sensitive
        "my social media handle is at four five",
    ],
)
def test_leaves_other_numbers(text: str) -> None:
    assert redact(text) == text


def test_phone_numbers_read_in_one_breath_are_not_cards() -> None:
    rng = random.Random(3)

    def phone() -> str:
        return f"{rng.randint(200, 999)}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"

    for _ in range(300):
        text = f"call {phone()}, {phone()} or 1-{phone()}"
        assert redact(text) == text
    mixed = "905-674-3793, 4111 1111 1111 1111"
    assert redact(mixed) == "905-674-3793, [CARD]"


def test_idempotent_when_redaction_brings_context_closer() -> None:
    text = "SSN " + " ".join(["4111 1111 1111 1111"] * 3) + " x " + "123456789"
    once = redact(text)
    assert redact(once) == once
    assert not re.search(r"\d", once)


def test_find_card_numbers_spans() -> None:
    text = "visa 4111 1111 1111 1111 and mastercard 5555-5555-5555-4444 ok"
    spans = find_card_numbers(text)
    assert [text[s:e] for s, e in spans] == ["4111 1111 1111 1111", "5555-5555-5555-4444"]


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert luhn_ok("378282246310005")
    assert not luhn_ok("4111111111111112")


# --------------------------------------------------------------------------- presidio sample data


@pytest.mark.parametrize("kind", ["CREDIT_CARD", "US_SSN"])
def test_presidio_written_recall(kind: str) -> None:
    spans = _spans(kind)
    assert len(spans) >= 10
    missed = [
        s["entity_value"]
        for text, s in spans
        if not _covered(text, s["start_position"], s["end_position"])
    ]
    assert missed == []


@pytest.mark.parametrize("kind", ["CREDIT_CARD", "US_SSN"])
def test_presidio_spoken_recall(kind: str) -> None:
    """The same records with each number read aloud as Whisper would write it."""
    rng = random.Random(7)
    missed = []
    for text, s in _spans(kind):
        digits = re.sub(r"\D", "", s["entity_value"])
        spoken = (
            _speak(digits, rng, group=4)
            if kind == "CREDIT_CARD"
            else ", ".join(_speak(p, rng) for p in (digits[:3], digits[3:5], digits[5:]))
        )
        new = text[: s["start_position"]] + spoken + text[s["end_position"] :]
        start = s["start_position"]
        if not _covered(new, start, start + len(spoken)):
            missed.append(spoken)
    assert missed == []


@pytest.mark.parametrize("kind", ["PHONE_NUMBER", "DATE_TIME", "ZIP_CODE", "AGE"])
def test_presidio_other_numbers_untouched(kind: str) -> None:
    spans = _spans(kind)
    assert len(spans) >= 20
    touched = [
        s["entity_value"]
        for text, s in spans
        if any(
            f.start < s["end_position"] and f.end > s["start_position"]
            for f in find_sensitive(text)
        )
    ]
    assert touched == []


def test_presidio_other_entities_rarely_touched() -> None:
    """Outside card/SSN spans only chance Luhn hits inside long digit strings (IBANs)."""
    wrong = []
    for r in _presidio():
        sensitive = [s for s in r["spans"] if s["entity_type"] in ("CREDIT_CARD", "US_SSN")]
        for f in find_sensitive(r["full_text"]):
            if not any(
                f.start < s["end_position"] and f.end > s["start_position"] for s in sensitive
            ):
                wrong.append(r["full_text"][f.start : f.end])
    assert len(wrong) <= 2
    assert all(re.fullmatch(r"\d{13,}", w) for w in wrong)


# --------------------------------------------------------------------------- properties


def _luhn_complete(prefix: str) -> str:
    return next(prefix + str(d) for d in range(10) if luhn_ok(prefix + str(d)))


cards = st.builds(
    lambda first, body, n: _luhn_complete(str(first) + body[: n - 2]),
    st.sampled_from([3, 4, 5, 6]),
    st.text(alphabet="0123456789", min_size=18, max_size=18),
    st.integers(min_value=13, max_value=19),
)
fillers = st.lists(
    st.sampled_from(["hello", "the", "is", "my", "number", "please", "thanks", "card", "ok"]),
    max_size=6,
).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(
    card=cards,
    before=fillers,
    after=fillers,
    sep=st.sampled_from(["", " ", "-"]),
    seed=st.integers(0, 9),
)
def test_no_card_survives(card: str, before: str, after: str, sep: str, seed: int) -> None:
    rng = random.Random(seed)
    if seed % 3 == 0:
        shown = _speak(card, rng, group=4 if seed % 2 else 0)
    else:
        shown = sep.join(card[i : i + 4] for i in range(0, len(card), 4))
    out = redact(f"{before} {shown} {after}")
    assert "[CARD]" in out
    assert not re.search(r"\d", out)


tokens = st.sampled_from(
    [*WORDS, "oh", "double", "triple", "forty", "eleven", "for", "to", "card", "SSN", "social",
     "CVV", "security code", "is", ",", "-", ".", " ", "\n", "[CARD]", "visa"]
    + [str(n) for n in (0, 1, 12, 123, 4111, 45, 6789, 1234567, 4111111111111111)]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(tokens, max_size=40).map(" ".join))
def test_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once
