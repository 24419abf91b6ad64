"""The one PII detector on single texts: card numbers, SSNs, CVVs (and the optional kinds),
in the forms ASR writes them; redaction and the ``check`` matcher agree on every case."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from cxguard import pii
from cxguard.model import TurnText
from cxguard.pii import forms
from cxguard.pii.text import parse

PRESIDIO = Path(__file__).parent / "data" / "presidio_pii_subset.json"


def kinds(text: str) -> list[str]:
    return [f.kind for f in pii.findings(text)]


# --------------------------------------------------------------------------- card numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my card is 4111 1111 1111 1111 thanks", "my card is [CARD] thanks"),
        ("4111-1111-1111-1111", "[CARD]"),
        ("it's 4111111111111111.", "it's [CARD]."),
        ("4111-1111. 1111-1111.", "[CARD]."),
        ("My card is 4111 1111. 1111 1111.", "My card is [CARD]."),
        ("four one one one one one one one one one one one one one one one", "[CARD]"),
        ("four double one one triple one triple one triple one triple one", "[CARD]"),
        ("Four one one one, one one one one, one one one one, one one one one.", "[CARD]."),
        ("4111 one one one one one one one one one one one one", "[CARD]"),
        ("forty one eleven eleven eleven eleven eleven eleven eleven", "[CARD]"),
        ("forty-one eleven, eleven eleven, eleven eleven, eleven eleven", "[CARD]"),
        ("four one one one uh one one one one um one one one one er one one one one", "[CARD]"),
        ("four one one one dash one one one one hyphen one one one one dash one one one one", None),
        ("four two four two for two four two, four two four two, four to four two", "[CARD]"),
        ("4 O 1 2 8 8 8 8 8 8 8 8 1 8 8 1", "[CARD]"),
        ("four oh one two, eight eight eight eight, eight eight eight eight, one eight eight one",
         "[CARD]"),
        ("four nought one two eight eight eight eight eight eight eight eight one eight eight one",
         "[CARD]"),
        ("three seven eight two, eight two two four, six three one, zero zero zero five", "[CARD]"),
        ("amex 3782 822463 10005 please", "amex [CARD] please"),
        ("４１１１ １１１１ １１１１ １１１１", "[CARD]"),
        ("٤١١١ ١١١١ ١١١١ ١١١١", "[CARD]"),
        ("the number 5500 0000 0000 0004 is on file", "the number [CARD] is on file"),
        ("the UATP card 1800 1607 0420 458 is the company one", None),  # 1-prefixed
        ("card 9792 0000 0000 0001", None),  # 9-prefixed (Troy)
        ("What is the limit for card 630427373398?", "What is the limit for card [CARD]?"),
        # Misheard: a card-shaped read that fails Luhn still goes (and fails the check).
        ("card number 4111 1111 1111 1112", "card number [CARD]"),
        ("it's 4111 1111 1111 1112", "it's [CARD]"),
        ("4111 1111 1111 111", "[CARD]"),  # one digit dropped: 15 digits
    ],
)  # fmt: skip
def test_card_numbers(text: str, expected: str | None) -> None:
    out = pii.redact(text)
    if expected is not None:
        assert out == expected
    assert "[CARD]" in out
    assert not re.search(r"\d{4}", out)
    assert pii.check("card_number", text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "a Visa ending in four four four eight",
        "card ending in 1111",
        "call us at 1-800-555-0199, option two",
        "Your account number is 4 7 2 9 1 3 8 8 0 5.",
        "You can pay two hundred dollars now and two hundred dollars on the first of next month.",
        "my zip code is nine four one zero seven and I was born in nineteen eighty",
        "oh okay, for two hundred dollars",
        "Your meter number is 3051 2210 9987 11.",
        "0411 1111 1111 1116",  # no payment card starts with 0 (Luhn-valid)
        "8111 1111 1111 1117",  # 8: health care / telecom, not a payment card
        "The amount is 1,500,000,000,000 dollars",
        "GB56HXDO88167774656119",  # an IBAN: digits glued to letters are not spoken digits
        "your call id is CA4111111111111111aa",
    ],
)
def test_not_card_numbers(text: str) -> None:
    assert pii.check("card_number", text) is None
    assert "[CARD]" not in pii.redact(text)


def test_identifiers_outside_the_banking_ranges_are_not_cards_but_are_still_masked() -> None:
    # A UATP-shaped (1...) Luhn-valid order number is an order number; said with a card word,
    # or in a banking network's range, a Luhn-valid number is a card whatever its label.
    order = "Let me check the status of your order 113542617735902 for you."
    assert pii.check("card_number", order) is None
    window = pii.RedactionWindow()
    stored = window.push(TurnText(0, "agent", order, 0.0, 3000.0))
    assert "113542617735902" not in stored and "[DIGITS]" in stored
    assert pii.check("card_number", "the card on file is 113542617735902") is not None
    assert pii.check("card_number", "order number 4532 0151 1283 0366") is not None
    assert pii.check("card_number", "order 113542617735902 was paid with that visa") is not None


def test_card_evidence_names_only_the_last_four() -> None:
    finding = pii.check("card_number", "Sure, it is 4532 0151 1283 0366.")
    assert finding is not None
    assert finding.evidence.startswith("card number ending 0366 (16 digits, Luhn-valid, Visa")
    assert not re.search(r"\d{5,}|4532|0151|1283", finding.evidence)
    assert "4532015112830366" not in repr(finding)


def test_issuer_ranges_and_luhn() -> None:
    assert pii.luhn_valid("4111111111111111") and pii.luhn_valid("378282246310005")
    assert not pii.luhn_valid("4111111111111112")
    assert pii.card_brand("378282246310005") == "American Express"
    assert pii.card_brand("5555555555554444") == "Mastercard"
    assert pii.card_brand("2223000048400011") == "Mastercard"
    assert pii.card_brand("6011111111111117") == "Discover"
    assert pii.card_brand("501864667909") == "Maestro"
    assert pii.valid_card("501864667909")  # 12 digits: Maestro only
    assert not pii.valid_card("411111111113")
    assert pii.valid_card("180016070420458")


# --------------------------------------------------------------------------- SSNs and CVVs


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Your SSN is 123-45-6789.", True),
        ("ssn 123 45 6789", True),
        ("it's one two three, four five, six seven eight nine", True),  # 3-2-4, no "social"
        ("oh seven eight, oh five, one one two oh", True),  # a leading "oh" is a zero here
        ("my social is one two three four five six seven eight nine", True),
        ("social security number 123456789", True),
        ("my SSN is 078051120", True),
        ("your reference is 123456789", False),  # 9 digits, nothing says SSN
        ("SSN 666-45-6789", False),  # area 666 is never issued
        ("SSN 123-00-6789", False),
        ("SSN 923-45-6789", False),
        ("your social ends in six seven eight nine", False),
        ("my social media handle is at four five", False),
        ("ticket 123-45-678 and order 99 12 3456", False),
    ],
)
def test_ssns(text: str, found: bool) -> None:
    assert (pii.check("ssn", text) is not None) is found
    assert ("[SSN]" in pii.redact(text)) is found
    if found:
        evidence = pii.check("ssn", text)
        assert evidence is not None and not re.search(r"\d{3,}", evidence.evidence.split(" at ")[0])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the security code is 123", "the security code is [CVV]"),
        ("CVV four five six", "CVV [CVV]"),
        ("and the CVC, uh, is 7 3 1", "and the CVC, uh, is [CVV]"),
        ("456 is my CVV", "[CVV] is my CVV"),
        ("amex 4 digit code four four three two", "amex 4 digit code [CVV]"),
        ("the three digit code on the back of your card is nine niner one", None),
        ("the code is 123", "the code is 123"),  # no security-code context
        ("CVV 12", "CVV 12"),
        ("your social security number ending in four three two one", None),  # last four
    ],
)
def test_cvvs(text: str, expected: str | None) -> None:
    out = pii.redact(text)
    if expected is not None:
        assert out == expected
    assert ("[CVV]" in out) is (pii.check("cvv", text) is not None)
    if expected is None and "social" not in text:
        assert "[CVV]" in out
    if "social" in text:
        assert out == text


@pytest.mark.parametrize(
    "text",
    [
        "call me on 905-674-3793 or (602) 272-9781",
        "+1-984-182-0190 ext 459",
        "born on 12/05/1985, zip 94107-1234",
        "the meeting is 2024-01-15 at 12:30",
        "you owe $1,234.56 and 14 cents, due in 30 days",
        "Oh, one more thing, I waited for two hours on hold",
        "my account number is 12345678901234",
        "the server is at 192.168.101.201",
    ],
)
def test_other_numbers_are_left_alone(text: str) -> None:
    assert pii.redact(text) == text


def test_phone_numbers_read_in_one_breath_are_not_cards() -> None:
    rng = random.Random(3)

    def phone() -> str:
        return f"{rng.randint(200, 999)}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"

    for _ in range(300):
        text = f"call {phone()}, {phone()} or 1-{phone()}"
        assert pii.redact(text) == text
    assert pii.redact("905-674-3793, 4111 1111 1111 1111") == "905-674-3793, [CARD]"


def test_optional_detectors_are_off_by_default() -> None:
    text = "call me on 905-674-3793, account number 00123456789, I was born on May 5th, 1980"
    assert pii.redact(text) == text
    on = pii.PiiOptions(phones=True, account_numbers=True, dates_of_birth=True)
    assert (
        pii.redact(text, on) == "call me on [PHONE], account number [ACCOUNT], I was born on [DOB]"
    )
    assert pii.redact("my date of birth is 12/05/1985", on) == "my date of birth is [DOB]"


def test_mask_tokens_are_not_context() -> None:
    """ "[CARD]" is not the word "card": redaction is one pass and idempotent."""
    text = "[CARD] 4111 1111 1111 1113 and [SSN] 123456789 [CVV] 123"
    assert pii.redact(text) == "[CARD] [CARD] and [SSN] 123456789 [CVV] 123"
    assert pii.redact(pii.redact(text)) == pii.redact(text)


def test_unicode_offsets_map_back_to_the_original_text() -> None:
    text = "ﬁne, card № ４１１１－１１１１－１１１１－１１１１ ok"
    (finding,) = pii.findings(text)
    assert text[finding.start : finding.end] == "４１１１－１１１１－１１１１－１１１１"


def test_parse_of_text_without_numbers_is_cheap() -> None:
    assert parse("Thank you for calling, how can I help?").runs == ()


# --------------------------------------------------------------------------- presidio sample


def _presidio() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(PRESIDIO.read_text(encoding="utf-8"))
    return records


def _spans(kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (r["full_text"], s) for r in _presidio() for s in r["spans"] if s["entity_type"] == kind
    ]


def _covered(text: str, start: int, end: int) -> bool:
    return any(f.start <= start and f.end >= end for f in pii.findings(text))


@pytest.mark.parametrize("kind", ["CREDIT_CARD", "US_SSN"])
def test_presidio_written_recall(kind: str) -> None:
    spans = _spans(kind)
    assert len(spans) >= 10
    missed = [
        s["entity_value"]
        for t, s in spans
        if not _covered(t, s["start_position"], s["end_position"])
    ]
    assert missed == []


@pytest.mark.parametrize("form", forms.FORMS)
@pytest.mark.parametrize("kind", ["CREDIT_CARD", "US_SSN"])
def test_presidio_spoken_recall(kind: str, form: str) -> None:
    """The same records with each number read aloud in ``form``, as ASR would write it."""
    rng = random.Random(f"{kind}{form}")
    missed = []
    for text, s in _spans(kind):
        digits = re.sub(r"\D", "", s["entity_value"])
        sizes = forms.card_groups(digits) if kind == "CREDIT_CARD" else (3, 2, 4)
        if kind == "US_SSN" and form in ("digits_run", "words_one_breath") and "SSN" not in text:
            continue  # ungrouped 9 digits are an SSN only when something says so
        said = forms.speak(digits, form, rng, sizes)
        new = text[: s["start_position"]] + said + text[s["end_position"] :]
        start = s["start_position"]
        if not _covered(new, start, start + len(said.rstrip(".?"))):
            missed.append(said)
    assert missed == []


@pytest.mark.parametrize("kind", ["PHONE_NUMBER", "DATE_TIME", "ZIP_CODE", "AGE"])
def test_presidio_other_numbers_untouched(kind: str) -> None:
    spans = _spans(kind)
    assert len(spans) >= 20
    touched = [
        s["entity_value"]
        for text, s in spans
        if any(
            f.start < s["end_position"] and f.end > s["start_position"] for f in pii.findings(text)
        )
    ]
    assert touched == []


def test_presidio_other_entities_are_not_masked() -> None:
    wrong = []
    for r in _presidio():
        sensitive = [s for s in r["spans"] if s["entity_type"] in ("CREDIT_CARD", "US_SSN")]
        for f in pii.findings(r["full_text"]):
            if not any(
                f.start < s["end_position"] and f.end > s["start_position"] for s in sensitive
            ):
                wrong.append(r["full_text"][f.start : f.end])
    assert wrong == []


@pytest.mark.parametrize(
    ("text", "held"),
    [
        ("849-56-S-3-1-189", True),
        ("$3,000,000,000", True),  # an amount is a number too: it may be a misheard card
        ("three point one million", True),
        ("one moment please", True),
        ("４１１１", True),  # fullwidth digits
        ("Have a nice day.", False),
        ("for checking", False),  # a lone homophone is no number
        ("Feel.", False),
    ],
)
def test_holds_number(text: str, held: bool) -> None:
    assert pii.holds_number(text) is held
