"""Properties over generated forms: every card, SSN and CVV read in any form is found and
masked, redaction and the ``check`` matcher agree, quantities stay readable."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cxguard import pii
from cxguard.model import TurnText
from cxguard.pii import forms
from cxguard.pii.text import parse

LEADS = ["", "my card number is", "sure, it's", "okay so the card is", "it is", "yes,", "Card:"]
TAILS = ["", "thanks", "did you get that?", ".", "and it expires soon", "okay?"]
SSN_LEADS = ["my social is", "SSN", "the social security number is", "it's", "", "sure,"]
CVV_LEADS = ["the security code is", "CVV", "and the CVC is", "the three digit code on the back is"]


def spoken_digits(text: str) -> str:
    """Every digit left readable in ``text``, as the detector reads them (words included)."""
    return "".join(run.digits for run in parse(text).runs) + "".join(
        a.digits for run in parse(text).runs for a in run.lead
    )


def survives(number: str, text: str, length: int) -> bool:
    left = spoken_digits(text)
    return any(number[i : i + length] in left for i in range(len(number) - length + 1))


@settings(max_examples=400, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    form=st.sampled_from(forms.FORMS),
    lead=st.sampled_from(LEADS),
    tail=st.sampled_from(TAILS),
)
def test_every_card_in_every_form_is_found_and_masked(
    seed: int, form: str, lead: str, tail: str
) -> None:
    rng = random.Random(seed)
    number = forms.random_card(rng)
    text = f"{lead} {forms.speak(number, form, rng, forms.card_groups(number))} {tail}".strip()
    finding = pii.check("card_number", text)
    assert finding is not None, text
    assert number not in finding.evidence and number[:-4] not in finding.evidence
    out = pii.redact(text)
    assert "[CARD]" in out
    assert not survives(number, out, 4), out


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32), form=st.sampled_from(forms.FORMS), lead=st.sampled_from(SSN_LEADS)
)
def test_every_ssn_is_found_and_masked(seed: int, form: str, lead: str) -> None:
    rng = random.Random(seed)
    number = forms.random_ssn(rng)
    said = forms.speak(number, form, rng, (3, 2, 4))
    text = f"{lead} {said}".strip()
    grouped = form not in ("digits_run", "words_one_breath")
    named = any(w in lead.lower() for w in ("social", "ssn"))
    finding = pii.check("ssn", text)
    if grouped or named:
        assert finding is not None, text
        out = pii.redact(text)
        assert "[SSN]" in out and not survives(number, out, 4), out
    else:  # 9 digits in one breath, nothing saying SSN: not an SSN (and not a card)
        assert finding is None


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    form=st.sampled_from([f for f in forms.FORMS if f != "sentence_split"]),
    lead=st.sampled_from(CVV_LEADS),
    length=st.sampled_from([3, 4]),
)
def test_every_cvv_after_its_context_is_found_and_masked(
    seed: int, form: str, lead: str, length: int
) -> None:
    rng = random.Random(seed)
    code = "".join(rng.choice("0123456789") for _ in range(length))
    text = f"{lead} {forms.speak(code, form, rng, (length,))}"
    assert pii.check("cvv", text) is not None, text
    out = pii.redact(text)
    assert "[CVV]" in out and not survives(code, out, 2), out


NUMBERS = st.builds(
    lambda seed, kind, form: _number_text(random.Random(seed), kind, form),
    st.integers(0, 2**32),
    st.sampled_from(["card", "ssn", "cvv", "amount", "date", "time", "phone", "count"]),
    st.sampled_from(forms.FORMS),
)


def _number_text(rng: random.Random, kind: str, form: str) -> str:
    if kind == "card":
        n = forms.random_card(rng)
        return forms.speak(n, form, rng, forms.card_groups(n))
    if kind == "ssn":
        return "social " + forms.speak(forms.random_ssn(rng), form, rng, (3, 2, 4))
    if kind == "cvv":
        return "CVV " + forms.speak(str(rng.randint(100, 9999)), form, rng, (4,))
    if kind == "amount":
        n = rng.randint(1, 9999)
        words = f"{rng.choice(forms.WORDS[1:])} hundred dollars"
        return rng.choice([f"${n}.{rng.randint(0, 99):02d}", words, "forty dollars"])
    if kind == "date":
        year = rng.randint(1950, 2030)
        slashed = f"{rng.randint(1, 12)}/{rng.randint(1, 28)}/{year}"
        return rng.choice([slashed, f"June {rng.randint(1, 28)}", f"in {year}"])
    if kind == "time":
        clock = f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d}"
        return rng.choice([clock, "3 pm", "nine a.m."])
    if kind == "phone":
        return f"{rng.randint(200, 999)}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
    return f"{rng.randint(2, 90)} days"


WORDS = st.sampled_from(
    ["hello", "the", "is", "my", "number", "please", "thanks", "card", "ok", "for", "to", ",",
     ".", "and", "uh", "social", "security code", "oh", "[CARD]", "visa", "\n"]
)  # fmt: skip
TEXTS = st.lists(st.one_of(NUMBERS, WORDS), max_size=14).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(TEXTS)
def test_redaction_and_the_check_are_one_detector(text: str) -> None:
    """What redaction masks, the check finds, kind by kind, and nothing else."""
    out = pii.redact(text)
    for kind, mask in (("card_number", "[CARD]"), ("ssn", "[SSN]"), ("cvv", "[CVV]")):
        before = text.count(mask)
        assert (out.count(mask) > before) is (pii.check(kind, text) is not None), (kind, text)
    assert pii.redact(out) == out


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    kind=st.sampled_from(["amount", "date", "time", "count"]),
    lead=st.sampled_from(["Your balance is", "It is due", "We open at", "That takes", "It was"]),
)
def test_quantities_stay_readable(seed: int, kind: str, lead: str) -> None:
    text = f"{lead} {_number_text(random.Random(seed), kind, 'words')}."
    assert pii.redact(text) == text
    window = pii.RedactionWindow()
    assert window.push(TurnText(0, "agent", text, 0.0, 1000.0)) == text
