"""The exact detectors behind `check`: card numbers and SSNs, in digits or in words."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxguard.policy.detectors import digit_runs, find_card_numbers, find_ssns, luhn_valid

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _luhn_complete(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


@pytest.mark.parametrize(
    "text",
    [
        "Your card number is four one one one, one one one one, one one one one, one one one one.",
        "it's 4111 1111 1111 1111",
        "card 4111-1111-1111-1111 expires soon",
        "forty-one eleven, eleven eleven, eleven eleven, eleven eleven",
        "four one one one, double one double one, triple one one, one one one one",
        "sure it's four one one one one one one one one one one one one one one one",
        "It's three seven eight two, eight two two four, six three one, zero zero zero five.",
        "the number 5500 0000 0000 0004 is on file",
        "account 12 4111 1111 1111 1111 thanks",
        "four two four two for two four two, four two four two, four to four two",  # ASR
    ],
)
def test_full_card_numbers_are_found(text: str) -> None:
    finding = next(find_card_numbers(text))
    assert finding.check == "card_number"
    assert finding.evidence.startswith("card number ending ")
    assert "1111 1111" not in finding.evidence and "11111111" not in finding.evidence


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails Luhn
        "a Visa ending in four four four eight",
        "call us at 1-800-555-0199, option two",
        "Your account number is 4 7 2 9 1 3 8 8 0 5.",
        "You can pay two hundred dollars now and two hundred dollars on the first of next month.",
        "my zip code is nine four one zero seven and I was born in nineteen eighty",
        "1234 5678 9012 3452",  # Luhn-valid but no card network starts with 1
        "oh okay, for two hundred dollars",
    ],
)
def test_no_card_number(text: str) -> None:
    assert list(find_card_numbers(text)) == []


def test_digit_runs_keep_groups_and_drop_homophones_at_the_edges() -> None:
    runs = list(digit_runs("pay for one two, three four to me"))
    assert [(r.digits, r.groups) for r in runs] == [("1234", (2, 2))]
    assert [r.digits for r in digit_runs("double oh seven")] == ["007"]
    assert [r.digits for r in digit_runs("twenty-one, ninety")] == ["2190"]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Your SSN is 123-45-6789.", True),
        ("Your social is one two three, four five, six seven eight nine.", True),
        ("social security number 123456789", True),
        ("your reference is 123456789", False),  # 9 digits, but nothing says SSN
        ("SSN 666-45-6789", False),  # area 666 is never issued
        ("SSN 123-00-6789", False),
        ("your social ends in six seven eight nine", False),
    ],
)
def test_ssn(text: str, found: bool) -> None:
    assert bool(list(find_ssns(text))) is found


@settings(max_examples=60, deadline=None)
@given(
    body=st.text(alphabet="0123456789", min_size=12, max_size=18),
    network=st.sampled_from("3456"),
    spoken=st.booleans(),
    separator=st.sampled_from([" ", ", ", "-", " "]),
    group=st.integers(min_value=1, max_value=4),
)
def test_any_luhn_valid_card_is_found_written_or_spoken(
    body: str, network: str, spoken: bool, separator: str, group: int
) -> None:
    number = _luhn_complete(network + body[:-1])
    chunks = [number[i : i + group] for i in range(0, len(number), group)]
    if spoken:
        chunks = [" ".join(WORDS[int(d)] for d in chunk) for chunk in chunks]
    text = "the card is " + separator.join(chunks) + " thanks"
    finding = next(find_card_numbers(text))
    assert finding.evidence.startswith(f"card number ending {number[-4:]}")
