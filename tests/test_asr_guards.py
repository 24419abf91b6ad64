"""The guards that keep Whisper's failure modes out of the evidence (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cxguard.asr import AsrRejected
from cxguard.asr.guards import (
    Decoded,
    check,
    compression_ratio,
    loop_found,
    looping,
    loudest_frame_dbfs,
    same_digit_run,
    speech_bursts,
    token_run,
)
from cxguard.errors import AsrError

LOOP = "The long journey home took a year. " * 6


def judge(d: Decoded, reject_logprob: float | None = -1.0) -> str:
    return check(
        d,
        no_speech_threshold=0.6,
        log_prob_threshold=-1.0,
        reject_logprob=reject_logprob,
        compression_ratio_threshold=2.4,
        model_id="m",
    )


def decoded(
    text: str, *, n: int = 10, budget: int = 60, lp: float = -0.2, ns: float = 0.05
) -> Decoded:
    return Decoded(text, n, budget, lp, ns)


def words(text: str) -> list[str]:
    return text.lower().replace(",", " ").replace(".", " ").split()


@pytest.mark.parametrize(
    "text",
    [
        "no, no, no, no",
        "I'm sorry, I'm sorry, I'm sorry",
        "Hello? Hello?",
        "4111 1111 1111 1111",
        "four one one one one one one one",  # seven ones: a count tiny.en may still get right
        "four two four two four two four two four two four two four two four two",
        "And so my fellow Americans, ask not what your country can do for you",
    ],
)
def test_speech_people_really_say_is_not_a_loop(text: str) -> None:
    assert loop_found(words(text)) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (LOOP, (7, 6)),
        ("thank you " * 5, (2, 5)),
        ("okay " * 9, (1, 9)),
        ("one " * 38, (1, 38)),  # tiny.en on the demo's card number, window=turn beam 1
        # A digit said again and again as its own word is a loop from 8 on (SPOKEN_DIGIT_RUN):
        # tiny.en miscounts 15 spoken ones as 21-47, and loops "3, 6, 6, 6, ..." on "3 6 6".
        ("four " + "one " * 15, (1, 15)),
        ("zero 1 5 1 1 2 8 3 0 3 " + "6 " * 8, (1, 8)),
    ],
)
def test_repetition_loops_are_found(text: str, expected: tuple[int, int]) -> None:
    assert loop_found(words(text)) == expected


def test_check_keeps_good_text_stripped() -> None:
    assert judge(decoded("  Can I pay it in installments? ")) == (
        "Can I pay it in installments?"
    )  # fmt: skip


def test_check_says_nothing_was_said_for_no_speech_and_punctuation() -> None:
    assert judge(decoded("You", lp=-1.9, ns=0.95)) == ""
    assert judge(decoded(" . . .", lp=-0.1, ns=0.3)) == ""


@pytest.mark.parametrize(
    ("d", "reason"),
    [
        (decoded("a b c " * 20, n=60, budget=60), "runaway"),
        (decoded(LOOP, n=48), "repetition"),
        (decoded("one two three " * 6), "compression_ratio"),  # digits: no n-gram rule
        (decoded("need the design", lp=-1.4, ns=0.2), "low_logprob"),
    ],
)
def test_check_rejects_untrustworthy_text(d: Decoded, reason: str) -> None:
    with pytest.raises(AsrRejected) as info:
        judge(d)
    err = info.value
    assert isinstance(err, AsrError)  # callers catch the documented tree
    assert err.reason == reason
    assert err.text == d.text.strip()
    assert err.model_id == "m" and err.avg_logprob == d.avg_logprob
    assert reason in str(err)


def test_low_logprob_rejection_can_be_turned_off() -> None:
    assert judge(decoded("need the design", lp=-1.4, ns=0.2), reject_logprob=None) == (
        "need the design"
    )  # fmt: skip
    # ... while the no-speech rule still holds.
    assert judge(decoded("You", lp=-1.9, ns=0.95), reject_logprob=None) == ""


def test_compression_ratio_separates_loops_from_speech() -> None:
    assert compression_ratio("And so my fellow Americans, ask not what your country can do") < 1.5
    assert compression_ratio(LOOP) > 2.4
    assert compression_ratio("") == 0.0


def test_loudest_frame_level() -> None:
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    assert loudest_frame_dbfs(tone) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.1)
    quiet = np.zeros(16000, np.float32)
    quiet[8000:8320] = 0.001  # one 20 ms frame at -60 dBFS
    assert loudest_frame_dbfs(quiet) == pytest.approx(-60.0, abs=0.1)
    assert loudest_frame_dbfs(np.zeros(100, np.float32)) == float("-inf")
    assert loudest_frame_dbfs(np.zeros(0, np.float32)) == float("-inf")


@pytest.mark.parametrize(
    ("text", "run"),
    [
        ("4111 1111 1111 1111", 15),
        ("four one one one one one", 5),
        ("to card numbers 5 1 1 1 1 1 1 1 1 1 1 1", 11),
        ("4532 0151 1283 0366", 2),
        ("one hundred and one", 1),
        ("no digits here", 0),
    ],
)
def test_same_digit_runs(text: str, run: int) -> None:
    assert same_digit_run(text) == run


def test_digits_grouped_by_the_decoder_are_counted_as_digits() -> None:
    # tiny.en wrote a looping "5 111 111 111 …" for a read-out 5111 1111 1111 1118.
    assert loop_found(words("card 5 " + "111 " * 8)) == (1, 8)
    assert loop_found(words("4111 1111 1111 1111")) is None


def test_bursts_of_speech_count_isolated_words() -> None:
    rate = 16000
    tone = np.sin(2 * np.pi * 220 * np.arange(int(0.25 * rate)) / rate).astype(np.float32)
    gap = np.zeros(int(0.15 * rate), np.float32)
    audio = np.concatenate([np.concatenate([tone, gap]) for _ in range(5)])
    assert speech_bursts(audio) == 5
    assert speech_bursts(np.concatenate([tone, tone])) == 1
    assert speech_bursts(np.zeros(100, np.float32)) == 0


def test_digits_dropped_against_the_audio_are_refused() -> None:
    short = Decoded("4 1 1 1 1", 5, 60, -0.3, 0.05, bursts=16)
    with pytest.raises(AsrRejected) as err:
        judge(short)
    assert err.value.reason == "truncated"
    assert judge(Decoded("4 1 1 1 1", 5, 60, -0.3, 0.05, bursts=5)) == "4 1 1 1 1"
    assert judge(Decoded("okay", 2, 60, -0.3, 0.05, bursts=16)) == "okay"  # words: not judged


@given(st.lists(st.sampled_from(["one", "two", "no", "okay", "4111", "sorry"]), max_size=40))
def test_looping_is_monotone_so_decoding_may_stop_early(ws: list[str]) -> None:
    for cut in range(len(ws) + 1):
        if looping(" ".join(ws[:cut])) is not None:
            assert looping(" ".join(ws)) is not None


def test_a_stopped_decode_is_refused_with_its_reason() -> None:
    d = Decoded("mmmm", 48, 90, -0.3, 0.05, stopped=("repetition", "one token repeated 27 times"))
    with pytest.raises(AsrRejected, match=r"repeated 27 times \(decoding stopped at 48 tokens\)"):
        judge(d)
    assert token_run([5, 5, 5, 7, 7], frozenset()) == 3
    assert token_run([5, 5, 5, 7, 7], frozenset({5})) == 2
