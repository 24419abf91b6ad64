"""The WER yardstick of the ASR tests and benchmarks/asr_bench.py: digits and amounts apart."""

from __future__ import annotations

import pytest

from cxguard.asr.wer import corpus_counts, normalize, score, token_class, tokens, wer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("And so, my fellow Americans!", "and so my fellow americans"),
        ("You can pay $200 now", "you can pay $200 now"),
        ("you can pay two hundred dollars now", "you can pay $200 now"),
        ("Your balance is $5,118.77.", "your balance is $5118.77"),
        ("five thousand one hundred and eighteen dollars and seventy seven cents", "$5118.77"),
        ("forty dollars", "$40"),
        ("you have $4,995.85 cents", "you have $4995.85"),
        ("$15,160 and 16 cents", "$15160.16"),
        ("zip code 94107", "zip code 9 4 1 0 7"),
        ("my zip code is nine four one zero seven", "my zip code is 9 4 1 0 7"),
        ("4111 1111", "4 1 1 1 1 1 1 1"),
        ("four one one one, one one one one", "4 1 1 1 1 1 1 1"),
        ("4 1 1 1", "4 1 1 1"),
        ("card number in 4.5, 3, 2", "card number in 4 5 3 2"),
        ("the one I want", "the one i want"),
        ("north-wind", "north wind"),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_token_classes() -> None:
    assert [token_class(t) for t in tokens("pay $40 to card 4111")] == [
        "word", "amount", "word", "word", "digit", "digit", "digit", "digit",
    ]  # fmt: skip


def test_edits_are_charged_to_the_class_of_the_reference_token() -> None:
    counts = score("Send $1,740 to card 4111", "Send 1,700 dollars to card 4 1 1")
    assert counts.ref == {"word": 3, "digit": 4, "amount": 1}
    assert counts.edits == {"word": 0, "digit": 1, "amount": 1}
    inserted = score("okay", "okay 5 5")
    assert inserted.edits == {"word": 0, "digit": 2, "amount": 0}
    assert score("", "thank you").edits["word"] == 2
    assert score("four one", "").edits["digit"] == 2


def test_corpus_wer_and_rates() -> None:
    assert wer(["a b c d", "hello there"], ["a x c", "Hello, there you."]) == pytest.approx(3 / 6)
    assert wer(["same words"], ["Same words."]) == 0.0
    counts = corpus_counts(["pay $40", "code 12"], ["pay forty dollars", "code 13"])
    assert (counts.rate("amount"), counts.rate("digit"), counts.rate("word")) == (0.0, 0.5, 0.0)
    assert counts.rate() == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="2 references but 1"):
        wer(["a", "b"], ["a"])
