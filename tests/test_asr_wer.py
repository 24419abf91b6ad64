"""The WER yardstick used by the ASR tests and benchmarks/asr_bench.py."""

from __future__ import annotations

import pytest

from cxguard.asr.wer import edit_distance, normalize, number_words, wer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("And so, my fellow Americans!", "and so my fellow americans"),
        ("I can't pay it all at once.", "i cant pay it all at once"),
        ("You can pay $200 now", "you can pay two hundred dollars now"),
        ("on the 21st and the 4th", "on the twenty first and the fourth"),
        ("zip code 94107", "zip code nine four one zero seven"),
        ("born in 1980, in 1905", "born in nineteen eighty in nineteen oh five"),
        (
            "1,250 customers, 12.5%",
            "one thousand two hundred fifty customers twelve point five percent",
        ),
        ("north-wind", "north wind"),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_number_words() -> None:
    assert number_words(0) == ["zero"]
    assert " ".join(number_words(1_002_019)) == "one million two thousand nineteen"
    assert " ".join(number_words(340)) == "three hundred forty"


def test_edit_distance_and_corpus_wer() -> None:
    assert edit_distance(["a", "b", "c", "d"], ["a", "x", "c"]) == 2
    assert edit_distance([], ["a", "b"]) == 2
    assert wer(["a b c d", "hello there"], ["a x c", "Hello, there you."]) == pytest.approx(3 / 6)
    assert wer(["same words"], ["Same words."]) == 0.0
    with pytest.raises(ValueError, match="2 references but 1"):
        wer(["a", "b"], ["a"])
