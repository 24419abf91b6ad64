"""The shared Whisper model on real recordings: JFK (16 kHz) and OSR Harvard sentences (8 kHz).

One tiny.en model per module (loading costs ~0.5 s and ~250 MB); the measured numbers are in
benchmarks/asr_bench.py's output, not asserted as timings here.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from faster_whisper import decode_audio

from cxguard.asr import AsrOptions, AsrRejected, Transcriber, resolve_model_path
from cxguard.asr.wer import wer
from cxguard.errors import AsrError, AudioError
from cxguard.model import Transcript

DATA = Path(__file__).parent / "data"
JFK = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


@pytest.fixture(scope="module")
def asr() -> Iterator[Transcriber]:
    t = Transcriber(AsrOptions(device="cpu", cpu_threads=2, fallback_model=None))
    t.warmup()
    yield t


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    audio: np.ndarray = decode_audio(str(DATA / "jfk_16k.flac"))
    return audio


@pytest.fixture(scope="module")
def osr_8k() -> list[tuple[np.ndarray, str]]:
    """The ten sentences as 8 kHz int16 PCM, cut by the timings in the .sentences.json."""
    with wave.open(str(DATA / "OSR_us_000_0034_8k.wav")) as w:
        assert w.getframerate() == 8000
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    meta = json.loads((DATA / "OSR_us_000_0034_8k.sentences.json").read_text())
    return [
        (pcm[int(s["start_s"] * 8000) : int(s["end_s"] * 8000)], s["text"])
        for s in meta["sentences"]
    ]


def as_pcm16(audio: np.ndarray) -> bytes:
    return bytes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def test_jfk_word_error_rate(asr: Transcriber, jfk: np.ndarray) -> None:
    result = asr.transcribe(as_pcm16(jfk))
    assert wer([JFK], [result.text]) <= 0.1, result.text
    assert result.model_id == asr.model_id
    assert result.avg_logprob is not None and result.avg_logprob > -0.5
    assert result.no_speech_prob is not None and result.no_speech_prob < 0.3
    assert result.asr_ms > 0


def test_full_window_matches_on_jfk(jfk: np.ndarray) -> None:
    full = Transcriber(AsrOptions(window="full", device="cpu", cpu_threads=2))
    assert wer([JFK], [full.transcribe(jfk).text]) <= 0.1


def test_silence_padding_matches_on_jfk(jfk: np.ndarray) -> None:
    silence = Transcriber(AsrOptions(padding="silence", device="cpu", cpu_threads=2))
    assert wer([JFK], [silence.transcribe(jfk).text]) <= 0.1


def test_osr_sentences_at_8khz(
    asr: Transcriber,
    osr_8k: list[tuple[np.ndarray, str]],
    record_property: Callable[[str, object], None],
) -> None:
    results = asr.transcribe_batch([pcm for pcm, _ in osr_8k], sample_rate=8000)
    texts = [r.text for r in results if isinstance(r, Transcript)]
    assert len(texts) == len(osr_8k)
    value = wer([ref for _, ref in osr_8k], texts)
    record_property("osr_wer", value)  # measured 0.0 with tiny.en int8, turn window
    assert value <= 0.1, texts


def test_batch_equals_single(asr: Transcriber, osr_8k: list[tuple[np.ndarray, str]]) -> None:
    items = [pcm for pcm, _ in osr_8k[:5]]
    batch = asr.transcribe_batch(items, sample_rate=8000)
    for pcm, together in zip(items, batch, strict=True):
        alone = asr.transcribe(pcm, sample_rate=8000)
        assert isinstance(together, Transcript)
        assert (together.text, together.avg_logprob) == (alone.text, alone.avg_logprob)
        assert together.no_speech_prob == pytest.approx(alone.no_speech_prob, abs=1e-6)


def test_concurrent_calls_from_threads(
    asr: Transcriber, osr_8k: list[tuple[np.ndarray, str]]
) -> None:
    expected = [asr.transcribe(pcm, 8000).text for pcm, _ in osr_8k[:2]]
    got: dict[int, str] = {}

    def work(i: int) -> None:
        got[i] = asr.transcribe(osr_8k[i][0], 8000).text

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[0], got[1]] == expected


def test_input_forms_agree(asr: Transcriber, osr_8k: list[tuple[np.ndarray, str]]) -> None:
    pcm = osr_8k[0][0]
    as_bytes = asr.transcribe(pcm.tobytes(), 8000).text
    as_float = asr.transcribe(pcm.astype(np.float32) / 32768.0, 8000).text
    assert as_bytes == as_float == asr.transcribe(pcm, 8000).text


def test_silence_never_reaches_the_model(asr: Transcriber) -> None:
    rng = np.random.default_rng(7)
    hiss = rng.normal(0.0, 10 ** (-65 / 20), 32000).astype(np.float32)  # -65 dBFS line noise
    for audio in (np.zeros(32000, np.int16), hiss, np.zeros(0, np.int16)):
        result = asr.transcribe(audio)
        assert result.text == ""
        assert (result.no_speech_prob, result.avg_logprob, result.asr_ms) == (1.0, None, 0.0)


@pytest.mark.parametrize("seconds", [1.0, 4.0])
def test_white_noise_gives_no_text(asr: Transcriber, seconds: float) -> None:
    rng = np.random.default_rng(int(seconds))
    noise = rng.normal(0.0, 0.1, int(16000 * seconds)).astype(np.float32)  # -20 dBFS
    result = asr.transcribe(noise)
    assert result.text == ""
    assert result.no_speech_prob is not None and result.no_speech_prob > 0.6
    assert result.asr_ms > 0  # the model did look at it


def test_runaway_decode_is_rejected_in_place(jfk: np.ndarray) -> None:
    # A token budget too small for JFK's 23 tokens stands in for a decoder that never ends.
    tight = Transcriber(AsrOptions(max_tokens_per_s=0.1, device="cpu", cpu_threads=2, fallbacks=()))
    with pytest.raises(AsrRejected) as info:
        tight.transcribe(jfk)
    assert info.value.reason == "runaway"
    assert info.value.text.startswith("And so my fellow Americans")
    silent, rejected = tight.transcribe_batch([np.zeros(8000, np.float32), jfk])
    assert isinstance(silent, Transcript) and silent.text == ""
    assert isinstance(rejected, AsrRejected) and rejected.reason == "runaway"


def test_model_id_names_the_weights(asr: Transcriber) -> None:
    weights = resolve_model_path("tiny.en") / "model.bin"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert re.fullmatch(r"whisper-tiny\.en-ct2-int8\w*@[0-9a-f]{12}", asr.model_id)
    assert asr.model_id.endswith("@" + digest[:12])


def test_unusable_input_is_refused(asr: Transcriber) -> None:
    with pytest.raises(AudioError, match="even number of bytes"):
        asr.transcribe(b"\x00\x01\x02")
    with pytest.raises(AudioError, match="mono"):
        asr.transcribe(np.zeros((2, 800), np.int16))
    with pytest.raises(AudioError, match="int16 PCM or float"):
        asr.transcribe(np.zeros(800, np.int32))
    with pytest.raises(AudioError, match="invalid sample rate"):
        asr.transcribe(np.zeros(800, np.int16), sample_rate=0)
    with pytest.raises(AsrError, match="exceeds max_turn_s"):
        asr.transcribe(np.zeros(31 * 8000, np.int16), sample_rate=8000)


def test_greedy_decoding_in_chunks_gives_the_text_of_one_call(
    asr: Transcriber, osr_8k: list[tuple[np.ndarray, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Five sentences in one 13 s segment: ~60 tokens, so the decode continues past its first
    # chunk (the loop checks run between chunks). One call without chunks must say the same.
    long = np.concatenate([pcm for pcm, _ in osr_8k[:5]])
    chunked = asr.transcribe(long, 8000)
    monkeypatch.setattr("cxguard.asr.whisper.FIRST_CHUNK", 448)
    whole = asr.transcribe(long, 8000)
    assert chunked.text == whole.text
    assert chunked.avg_logprob == pytest.approx(whole.avg_logprob, abs=0.05)
    assert wer([" ".join(ref for _, ref in osr_8k[:5])], [chunked.text]) <= 0.1
