"""The turn-sized window loops on some digit strings; the full-window retry recovers them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxguard.asr.guards import AsrRejected
from cxguard.asr.options import AsrOptions
from cxguard.asr.transcriber import Transcriber
from cxguard.audio.codec import ulaw_decode, ulaw_encode
from cxguard.audio.files import read_audio
from cxguard.audio.vad import VadSegmenter

DEMO = Path(__file__).resolve().parents[1] / "cxguard" / "data" / "demo"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def card_turn() -> bytes:
    """The demo agent reading a card number, cut by the VAD as the live path cuts it."""
    pcm = ulaw_decode(ulaw_encode(read_audio(DEMO / "agent.wav", 8000)))
    seg = VadSegmenter("agent")
    turns = seg.feed(pcm, 0.0) + seg.flush()
    script = json.loads((DEMO / "turns.json").read_text())["turns"]
    card = next(t for t in script if "card number" in t["text"])
    return next(t for t in turns if abs(t.start_ms - card["start_ms"]) < 100).pcm16


def test_looping_turn_window_is_rejected_without_the_retry(card_turn: bytes) -> None:
    asr = Transcriber(AsrOptions(full_window_fallback=False))
    with pytest.raises(AsrRejected) as err:
        asr.transcribe(card_turn)
    assert err.value.reason in ("runaway", "repetition")


def test_full_window_retry_recovers_the_digits(card_turn: bytes) -> None:
    # tiny.en gets most of the 16 digits, not always each one (dependency versions move the
    # features by rounding): enough for the card-number check, which is what the turn is for.
    text = Transcriber(AsrOptions()).transcribe(card_turn).text
    digits = "".join(ch for ch in text if ch.isdigit())
    assert digits.startswith("4532") and len(digits) >= 15, text


def test_looping_turns_in_one_batch_are_all_recovered(card_turn: bytes) -> None:
    # Several calls' copies of the same turn arrive together; their retries share one call.
    results = Transcriber(AsrOptions()).transcribe_batch([card_turn, card_turn, card_turn])
    for result in results:
        assert not isinstance(result, Exception), result
        digits = "".join(ch for ch in result.text if ch.isdigit())
        assert digits.startswith("4532") and len(digits) >= 15, result.text


def test_real_repeated_digits_are_refused_not_cut_short() -> None:
    # FSDD speaker "jackson" reading 4111 1111 1111 1111. Both windows loop on it, so the default
    # refuses the text (an alerted undetermined); forbidding repeated 4-grams would instead
    # return a short, plausible "4 1 1 1 1" that no card-number check would flag.
    pcm = read_audio(DATA / "fsdd_jackson_card_4111111111111111_8k.wav", 16000)
    with pytest.raises(AsrRejected):
        Transcriber(AsrOptions()).transcribe(pcm, 16000)
    cut = Transcriber(AsrOptions(no_repeat_ngram_size=4)).transcribe(pcm, 16000).text
    assert len([ch for ch in cut if ch.isdigit()]) < 16
