"""Money amounts collapse to one placeholder before the classifiers read a turn; other
numbers stay (cxguard/policy/textnorm.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from num2words import num2words

from cxguard.policy.textnorm import AMOUNT, collapse_amounts


def _spoken(value: float) -> str:
    dollars, cents = divmod(round(value * 100), 100)
    words = num2words(dollars).replace(",", "")
    return f"{words} dollars and {num2words(cents)} cents" if cents else f"{words} dollars"


def _figures(value: float) -> str:
    return f"${value:,.2f}"


def _broken(value: float) -> str:
    """How tiny.en wrote read-out balances in replayed calls: a figure per spoken group."""
    dollars, cents = divmod(round(value * 100), 100)
    thousands, rest = divmod(dollars, 1000)
    return f"{thousands * 1000:,} and {rest:,} and {cents}"


@given(
    value=st.floats(min_value=1000, max_value=99_999, allow_nan=False).map(lambda v: round(v, 2)),
    form=st.sampled_from([_spoken, _figures, _broken]),
    before=st.sampled_from(["Your balance is", "I can, your savings has", "The total was"]),
    after=st.sampled_from(["right now.", "today, anything else?", "in your account."]),
)
def test_an_amount_in_any_shape_becomes_one_placeholder(
    value: float, form: object, before: str, after: str
) -> None:
    assert callable(form)
    text = f"{before} {form(value)} {after}"
    assert collapse_amounts(text) == f"{before} {AMOUNT} {after}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("You can pay $100 now and the rest next month.",
         "You can pay [AMOUNT] now and the rest next month."),
        ("We can split the $300 balance into three payments of $100.",
         "We can split the [AMOUNT] balance into three payments of [AMOUNT]."),
        ("Transfer [DIGITS] and $80 from savings.", "Transfer [AMOUNT] from savings."),
        ("The rate is 4.5% and the fee is twelve dollars.",
         "The rate is [AMOUNT] and the fee is [AMOUNT]."),
        ("The balance is £13,500 and £73.", "The balance is [AMOUNT]."),
    ],
)  # fmt: skip
def test_amounts_in_sentences(text: str, expected: str) -> None:
    assert collapse_amounts(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "One moment please, I'll look that up.",
        "Please call back at 9:30 on the 15th.",
        "It takes twenty five days, in 3 payments.",
        "Your card ending [CARD] was replaced on March 3rd.",
        "I have 2 options for you and 1 question.",
        "Press one for billing or two for sales.",
        "The form is W2 and the code is A1.",
    ],
)
def test_counts_times_ordinals_and_codes_stay(text: str) -> None:
    assert collapse_amounts(text) == text
