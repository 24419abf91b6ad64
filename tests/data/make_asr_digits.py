"""Regenerate ``asr_digits/``: numbers read digit by digit by TTS voices, through 8 kHz μ-law.

    PYTHONPATH=. .venv/bin/python tests/data/make_asr_digits.py

Needs espeak-ng 1.51 and flite 2.2 (``apt-get install espeak-ng flite``); both are deterministic.
The readings come from ``benchmarks/asr_corpus.digit_readings`` with seed 23 (the benchmark uses
seed 11, so the tests and the benchmark do not share a recording), each spoken by two voices of
different engines and rates. ``index.json`` lists file, text, digits and voice.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.asr_corpus import digit_readings
from cxguard.audio.files import write_wav_ulaw
from scripts.replay.tts import RATE, Voice, speak

OUT = Path(__file__).resolve().parent / "asr_digits"
VOICES = (
    (Voice("espeak-ng", "en-us", 1.0), Voice("flite", "slt", 0.85)),
    (Voice("flite", "rms", 1.0), Voice("espeak-ng", "en-gb", 1.2)),
)
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    index = []
    for i, text in enumerate(digit_readings(4, seed=23)):
        digits = "".join(
            str(WORDS.index(w)) for w in text.replace(",", "").rstrip(".").split() if w in WORDS
        )
        for voice in VOICES[i % 2]:
            name = f"reading{i}_{voice.engine}_{voice.name}_{voice.rate:g}.wav"
            write_wav_ulaw(OUT / name, speak(text, voice), RATE)
            index.append({"file": name, "text": text, "digits": digits, "voice": voice.label})
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
