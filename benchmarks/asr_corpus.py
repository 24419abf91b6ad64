"""Utterances for the ASR benchmark: real recordings, synthetic bank-call speech, non-speech.

Real speech (``/work/shared/audio`` next to the repository, or ``tests/data``): JFK, ten OSR
Harvard sentences (8 kHz), the pyannote telephone call cut by its .stm, the FSDD speaker reading
4111 1111 1111 1111, and that recording cut into its 16 isolated digits (short real segments).

Synthetic (espeak-ng and flite, several voices and rates, 8 kHz μ-law; ``scripts/replay/tts``):
sentences that others wrote — SGD Banks_1 system and user turns with dollar amounts and other
numbers, short SGD turns of one to three words — and digit readings generated from a seeded RNG
(card numbers in groups, account numbers, ZIP codes; Luhn-valid cards, repeated-digit test cards).

Non-speech (must come back empty or refused): white/pink/brown noise, mains hum, DTMF digits,
sox-synthesised music, at several levels.
"""

from __future__ import annotations

import json
import random
import re
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr

from scripts.replay.tts import Voice, speak, telephone

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SGD = ROOT / "data" / "public" / "sgd" / "sgd_banks1_turns.jsonl"
RATE = 16_000
JFK = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Utterance:
    corpus: str
    """real: jfk, osr, pyannote, card, fsdd-digit; synthetic: tts-money, tts-numbers, tts-words,
    tts-short, tts-digits; nonspeech: noise (reference "")."""
    audio: npt.NDArray[np.float32]
    """16 kHz float in [-1, 1]."""
    text: str
    voice: str = ""


def float16k(pcm: npt.NDArray[np.int16], rate: int) -> npt.NDArray[np.float32]:
    audio = pcm.astype(np.float32) / 32768.0
    if rate != RATE:
        audio = soxr.resample(audio, rate, RATE).astype(np.float32)
    return audio


def _wav(path: Path) -> npt.NDArray[np.float32]:
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return float16k(pcm, w.getframerate())


def _cut(audio: npt.NDArray[np.float32], start_s: float, end_s: float) -> npt.NDArray[np.float32]:
    return audio[max(0, int(start_s * RATE)) : int(end_s * RATE)]


def real(shared_audio: Path) -> list[Utterance]:
    from faster_whisper import decode_audio

    utts = [Utterance("jfk", decode_audio(str(DATA / "jfk_16k.flac")), JFK)]
    osr = _wav(DATA / "OSR_us_000_0034_8k.wav")
    meta = json.loads((DATA / "OSR_us_000_0034_8k.sentences.json").read_text())
    utts += [
        Utterance("osr", _cut(osr, s["start_s"], s["end_s"]), s["text"]) for s in meta["sentences"]
    ]
    stm = shared_audio / "pyannote_sample.stm"
    if stm.is_file():
        call = _wav(shared_audio / "pyannote_sample_telephone_16k.wav")
        for line in stm.read_text().splitlines():
            fields = line.split(None, 5)
            start, end = float(fields[3]), float(fields[4])
            utts.append(Utterance("pyannote", _cut(call, start - 0.1, end + 0.1), fields[5]))
    card = _wav(DATA / "fsdd_jackson_card_4111111111111111_8k.wav")
    spoken = [DIGITS[4]] + [DIGITS[1]] * 15
    utts.append(Utterance("card", card, " ".join(spoken)))
    pieces = split_on_silence(card)
    if len(pieces) == len(spoken):  # one isolated real word per piece
        utts += [Utterance("fsdd-digit", p, w) for p, w in zip(pieces, spoken, strict=True)]
    return utts


def reversed_speech(utts: list[Utterance]) -> list[Utterance]:
    """Real speech played backwards (corpus ``reversed``): a voice, a telephone channel and the
    rhythm of speech, but no words — any text accepted on it is a hallucination, and unlike
    noise or tones the no-speech rule does not empty it."""
    return [
        Utterance("reversed", u.audio[::-1].copy(), "", f"reversed:{u.corpus}")
        for u in utts
        if u.corpus in ("osr", "pyannote")
    ]


def split_on_silence(
    audio: npt.NDArray[np.float32], frame_s: float = 0.02, gap_s: float = 0.08, pad_s: float = 0.1
) -> list[npt.NDArray[np.float32]]:
    """Cut at pauses of at least ``gap_s`` (frames 35 dB under the loudest), keeping ``pad_s``
    of context each side: how the VAD would hand isolated words to the ASR."""
    n = int(frame_s * RATE)
    frames = audio[: audio.size // n * n].reshape(-1, n)
    level = 20 * np.log10(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) + 1e-9)
    voiced = level > level.max() - 35
    spans: list[list[int]] = []
    for i, v in enumerate(voiced):
        if v and spans and i - spans[-1][1] <= gap_s / frame_s:
            spans[-1][1] = i + 1
        elif v:
            spans.append([i, i + 1])
    pad = int(pad_s * RATE)
    return [audio[max(0, a * n - pad) : b * n + pad] for a, b in spans if (b - a) * frame_s >= 0.1]


def _sgd_utterances() -> list[dict[str, str]]:
    return [json.loads(line) for line in SGD.read_text().splitlines() if line.strip()]


def sgd_sentences(per_kind: int, seed: int = 7) -> dict[str, list[str]]:
    """Distinct SGD Banks_1 turns: with a dollar amount, with other digits, words only, short
    (one to three words). Sampled with a fixed seed, never chosen by hand."""
    rows = _sgd_utterances()
    kinds: dict[str, set[str]] = {"tts-money": set(), "tts-numbers": set(), "tts-words": set()}
    short: dict[str, int] = {}
    for r in rows:
        text = r["utterance"].strip()
        if "$" in text or re.search(r"\d[\d,]* (dollars|bucks)", text):
            kinds["tts-money"].add(text)
        elif re.search(r"\d", text):
            kinds["tts-numbers"].add(text)
        elif len(text.split()) <= 3:
            short[text] = short.get(text, 0) + 1
        elif len(text.split()) <= 20:
            kinds["tts-words"].add(text)
    rng = random.Random(seed)
    out = {k: rng.sample(sorted(v), min(per_kind, len(v))) for k, v in kinds.items()}
    # Short turns: the most frequent ones (they are what real callers say most), ties by text.
    out["tts-short"] = [t for t, _ in sorted(short.items(), key=lambda kv: (-kv[1], kv[0]))]
    return out


def luhn_complete(digits: list[int]) -> list[int]:
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return [*digits, (10 - total % 10) % 10]


def digit_readings(n: int, seed: int = 11) -> list[str]:
    """Numbers read digit by digit, as agents and callers read them: card numbers in groups of
    four (Luhn-valid; one in four a repeated-digit test card), account numbers, ZIP codes."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            first = rng.choice([4, 5])
            body = [first] + [rng.choice([1, 2, 4])] * 14
            digits = luhn_complete(body)
            groups = [digits[j : j + 4] for j in range(0, 16, 4)]
            lead = "The card number is"
        elif kind == 1:
            digits = luhn_complete([rng.choice([4, 5])] + [rng.randrange(10) for _ in range(14)])
            groups = [digits[j : j + 4] for j in range(0, 16, 4)]
            lead = rng.choice(["Your card number is", "My card number is", "It is"])
        elif kind == 2:
            digits = [rng.randrange(10) for _ in range(rng.choice([8, 10]))]
            groups = [digits[:3], digits[3:6], digits[6:]]
            lead = rng.choice(["The account number is", "My account number is"])
        else:
            digits = [rng.randrange(10) for _ in range(5)]
            groups = [digits]
            lead = rng.choice(["My zip code is", "The zip code is"])
        spoken = ", ".join(" ".join(DIGITS[d] for d in g) for g in groups)
        out.append(f"{lead} {spoken}.")
    return out


def synthetic(
    voices: list[Voice], per_kind: int = 6, digits: int = 8, short: int = 24
) -> list[Utterance]:
    texts = sgd_sentences(per_kind)
    texts["tts-short"] = texts["tts-short"][:short]
    texts["tts-digits"] = digit_readings(digits)
    utts = []
    for kind, lines in texts.items():
        for i, text in enumerate(lines):
            # Each line in two voices, one per engine, rotating so every voice gets used.
            espeak = [v for v in voices if v.engine == "espeak-ng"]
            flite = [v for v in voices if v.engine == "flite"]
            for pool in (espeak, flite):
                if pool:
                    v = pool[(i + len(kind)) % len(pool)]
                    utts.append(Utterance(kind, float16k(speak(text, v), 8000), text, v.label))
    return utts


def nonspeech(seed: int = 3) -> Iterator[Utterance]:
    """Noise, hum, tones and music at telephone levels, 1-4 s, through μ-law."""
    rng = np.random.default_rng(seed)
    rate = 8000

    def out(name: str, x: npt.NDArray[np.float64], dbfs: float) -> Utterance:
        x = x / (np.sqrt((x**2).mean()) + 1e-12) * 10 ** (dbfs / 20) * 32767
        pcm = telephone(np.clip(x, -32768, 32767).astype(np.int16))
        if dbfs < -3:  # telephone() normalises the peak: restore the level asked for
            pcm = (pcm.astype(np.float64) * 10 ** ((dbfs + 3) / 20)).astype(np.int16)
        return Utterance("noise", float16k(pcm, rate), "", name)

    for secs in (1.0, 2.5):
        n = int(secs * rate)
        t = np.arange(n) / rate
        white = rng.normal(size=n)
        spectrum = np.fft.rfft(rng.normal(size=n))
        f = np.maximum(np.fft.rfftfreq(n, 1 / rate), 1.0)
        pink = np.fft.irfft(spectrum / np.sqrt(f), n)
        brown = np.fft.irfft(spectrum / f, n)
        hum = np.sin(2 * np.pi * 60 * t) + 0.5 * np.sin(2 * np.pi * 180 * t)
        for dbfs in (-40.0, -25.0):
            yield out(f"white{dbfs:g}@{secs:g}s", white, dbfs)
            yield out(f"pink{dbfs:g}@{secs:g}s", pink, dbfs)
            yield out(f"brown{dbfs:g}@{secs:g}s", brown, dbfs)
            yield out(f"hum{dbfs:g}@{secs:g}s", hum + 0.05 * white, dbfs)
        # DTMF: a caller keying digits, 100 ms tones, 100 ms gaps.
        low, high = (697, 770, 852, 941), (1209, 1336, 1477)
        dtmf = np.zeros(n)
        for k in range(int(secs / 0.2)):
            s = slice(int(k * 0.2 * rate), int((k * 0.2 + 0.1) * rate))
            lo, hi = low[rng.integers(4)], high[rng.integers(3)]
            dtmf[s] = np.sin(2 * np.pi * lo * t[s]) + np.sin(2 * np.pi * hi * t[s])
        yield out(f"dtmf@{secs:g}s", dtmf, -12.0)
        # Hold music: plucked chords with vibrato, then the same under line noise.
        music = np.zeros(n)
        notes = (220.0, 277.2, 329.6, 440.0, 392.0, 349.2)
        for k in range(int(secs / 0.25)):
            start = int(k * 0.25 * rate)
            seg = t[: min(int(0.5 * rate), n - start)]
            f0 = notes[int(rng.integers(len(notes)))]
            tone = sum(np.sin(2 * np.pi * f0 * h * seg) / h for h in (1, 2, 3))
            music[start : start + seg.size] += tone * np.exp(-4 * seg)
        yield out(f"music@{secs:g}s", music, -18.0)
        yield out(f"music+noise@{secs:g}s", music + 0.3 * pink / np.abs(pink).max(), -18.0)
