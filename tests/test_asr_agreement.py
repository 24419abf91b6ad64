"""Decode agreement: what every decode found only unsure is kept when two decodes agree.

Pure rules on constructed rejections, then the real tiny.en cascade on two SGD turns spoken by
espeak-ng through 8 kHz μ-law (``tests/data/make_asr_unsure.py``) and on non-speech.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cxguard.asr import AsrOptions, AsrRejected, RejectReason, Transcriber
from cxguard.asr.agreement import agreed, readings
from cxguard.asr.wer import normalize
from cxguard.audio.files import read_audio
from cxguard.model import Transcript
from cxguard.runtime.asr_wire import decode_result, encode_result

UNSURE = Path(__file__).resolve().parent / "data" / "asr_unsure"
INDEX = {r["kind"]: r for r in json.loads((UNSURE / "index.json").read_text())}


def rejected(
    text: str, decode: str, lp: float = -1.2, reason: RejectReason = "low_logprob"
) -> AsrRejected:
    r = AsrRejected(reason, "test", text=text, model_id="tiny", avg_logprob=lp, no_speech_prob=0.1)
    r.decode = decode
    r.asr_ms = 10.0
    return r


def test_two_decodes_with_the_same_words_are_accepted_and_named() -> None:
    out = agreed(
        [
            rejected("Have a nice day", "turn-b1", -1.3),
            rejected("and a nice day", "turn-b5", -1.1),
            rejected("Have a nice day!", "full-b5", -1.2),
        ],
        floor=-1.5,
    )
    assert isinstance(out, Transcript)
    assert out.decode == "agreed:turn-b1+full-b5"
    assert (out.text, out.avg_logprob) == ("Have a nice day!", -1.2)  # the surer of the two
    assert out.asr_ms == 30.0  # every decode's time, not only the agreeing ones'


@pytest.mark.parametrize(
    "rejections",
    [
        [rejected("okay", "turn-b1"), rejected("ok then", "turn-b5")],  # different words
        [rejected("okay", "turn-b1")],  # one decode is no agreement
        [rejected("okay", "turn-b1", -1.6), rejected("okay", "turn-b5", -1.2)],  # under floor
        [rejected("", "turn-b1"), rejected("", "turn-b5")],  # no words
        # The agreeing texts must have failed only the log-probability guard.
        [rejected("okay", "turn-b1", reason="compression_ratio"), rejected("okay", "turn-b5")],
        # A decode that dropped digits or looped on them vetoes: a number is never accepted
        # from fewer digits than were spoken.
        [
            rejected("4 1 1 1", "turn-b1", reason="truncated"),
            rejected("4 1 1 1", "turn-b5"),
            rejected("4 1 1 1", "full-b5"),
        ],
        [
            rejected("4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", "turn-b1", reason="repetition"),
            rejected("4 1 1 1", "turn-b5"),
            rejected("4 1 1 1", "full-b5"),
        ],
    ],
)
def test_no_agreement(rejections: list[AsrRejected]) -> None:
    assert agreed(rejections, floor=-1.5) is None


def test_a_loop_on_words_does_not_veto_two_agreeing_decodes() -> None:
    out = agreed(
        [
            rejected("Ok. Ok. Ok. Ok. Ok. Ok.", "turn-b1", reason="repetition"),
            rejected("Okay.", "turn-b5"),
            rejected("okay", "full-b5"),
        ],
        floor=-1.5,
    )
    assert out is not None and out.decode == "agreed:turn-b5+full-b5"


def test_readings_are_the_distinct_texts_in_decode_order() -> None:
    out = readings(
        [
            rejected("Feel", "turn-b1", -1.8),
            rejected("Feel...", "turn-b5", -1.4),
            rejected("Cool.", "full-b5", -1.3, reason="repetition"),
        ]
    )
    assert out == ("Feel", "Cool.")
    # Order is the decodes' order even when a later decode repeats an earlier text.
    again = [rejected("Feel", "turn-b1"), rejected("Cool.", "turn-b5"), rejected("feel", "full-b5")]
    assert readings(again) == ("Feel", "Cool.")


@pytest.mark.parametrize(
    "rejections",
    [
        [rejected("okay", "turn-b1")],  # one decode's words are no reading of the segment
        [rejected("okay", "turn-b1"), rejected("", "turn-b5"), rejected(" ", "full-b5")],
        # A number may have been said that no reading holds whole: no readings at all.
        [rejected("4 1 1 1", "turn-b1", reason="truncated"), rejected("for one", "turn-b5")],
        [
            rejected("4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", "turn-b1", reason="repetition"),
            rejected("for a while", "turn-b5"),
        ],
    ],
)
def test_no_readings(rejections: list[AsrRejected]) -> None:
    assert readings(rejections) == ()


def test_readings_cross_the_asr_pools_wire() -> None:
    sent = rejected("Feel", "turn-b1")
    sent.readings = ("Feel", "Cool.")
    fields = encode_result("1-0", sent, "worker-1")
    _, got = decode_result({k.encode(): v.encode() for k, v in fields.items()})
    assert isinstance(got, AsrRejected)
    assert (got.readings, str(got)) == (("Feel", "Cool."), str(sent))


@pytest.fixture(scope="module")
def cascade() -> Transcriber:
    return Transcriber(AsrOptions(device="cpu", fallback_model=None))


@pytest.fixture(scope="module")
def without_agreement() -> Transcriber:
    return Transcriber(replace(AsrOptions(device="cpu", fallback_model=None), agree_logprob=None))


def _pcm(kind: str) -> bytes:
    return read_audio(UNSURE / INDEX[kind]["file"], 8000).tobytes()


def test_a_short_turn_every_decode_was_unsure_of_is_kept_when_they_agree(
    cascade: Transcriber, without_agreement: Transcriber
) -> None:
    pcm = _pcm("agree")
    refused = without_agreement.transcribe_batch([pcm], 8000)[0]
    assert isinstance(refused, AsrRejected), refused
    assert refused.attempts == tuple(f"{d}:low_logprob" for d in cascade.decodes)
    kept = cascade.transcribe_batch([pcm], 8000)[0]
    assert isinstance(kept, Transcript), kept
    assert kept.decode.startswith("agreed:"), kept.decode
    assert len(kept.decode.removeprefix("agreed:").split("+")) >= 2
    assert kept.avg_logprob is not None and -1.5 <= kept.avg_logprob < -1.0
    assert normalize(kept.text) == normalize(INDEX["agree"]["text"])


def test_decodes_that_disagree_still_leave_the_turn_undetermined(cascade: Transcriber) -> None:
    refused = cascade.transcribe_batch([_pcm("disagree")], 8000)[0]
    assert isinstance(refused, AsrRejected), refused
    assert refused.reason == "low_logprob"
    assert len(refused.attempts) == len(cascade.decodes)
    # What the decodes heard is kept for the policy engine, one entry per distinct text.
    assert 2 <= len(refused.readings) <= len(cascade.decodes), refused.readings
    assert len({normalize(r) for r in refused.readings}) == len(refused.readings)
    assert all(normalize(r) for r in refused.readings)


def test_non_speech_gets_no_agreed_text(cascade: Transcriber) -> None:
    # Noise, hum and beeps: agreement must not turn a hallucination that every decode repeats
    # into text. (A beep train is "Beep Beep Beep Beep" to turn-b5 itself, with or without
    # agreement: sound words, which no policy rule reads as a violation.)
    rng = np.random.default_rng(5)
    t = np.arange(16_000 * 2) / 16_000
    clips = [
        rng.normal(0, 0.03, t.size),
        np.cumsum(rng.normal(0, 0.002, t.size)),  # brown
        0.05 * np.sin(2 * np.pi * 60 * t) + 0.02 * np.sin(2 * np.pi * 180 * t),
        0.1 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 2 * t) > 0),  # beeps
    ]
    for clip in clips:
        r = cascade.transcribe_batch([clip.astype(np.float32)], 16_000)[0]
        assert not (isinstance(r, Transcript) and r.decode.startswith("agreed:")), r
