"""Regenerate ``asr_unsure/``: short SGD turns that tiny.en decodes only with low confidence.

    PYTHONPATH=. .venv/bin/python tests/data/make_asr_unsure.py

Needs espeak-ng 1.51 (``apt-get install espeak-ng``), which is deterministic. The sentences are
SGD Banks_1 turns (other writers, CC BY-SA 4.0, see ``shared/data/SOURCES.md``) that every decode
of the default cascade (turn-b1, turn-b5, full-b5) scores under ``reject_logprob``: in one
recording the decodes agree on the words, in the other they do not
(``tests/test_asr_fallback.py``, decode agreement). ``index.json`` lists file, text and voice.
"""

from __future__ import annotations

import json
from pathlib import Path

from cxguard.audio.files import write_wav_ulaw
from scripts.replay.tts import RATE, Voice, speak

OUT = Path(__file__).resolve().parent / "asr_unsure"
TURNS = (
    ("agree", "For checking.", Voice("espeak-ng", "en-gb-x-rp", 1.2)),
    ("disagree", "Transfer successful.", Voice("espeak-ng", "en-us", 1.0)),
)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    index = []
    for kind, text, voice in TURNS:
        name = f"{kind}_{voice.engine}_{voice.name}_{voice.rate:g}.wav"
        write_wav_ulaw(OUT / name, speak(text, voice), RATE)
        index.append({"file": name, "kind": kind, "text": text, "voice": voice.label})
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
