"""Regenerate ``unsure_call/``: a two-track call whose one customer turn ASR refuses.

    PYTHONPATH=. .venv/bin/python tests/data/make_unsure_call.py

The agent greets and later offers more help (flite ``slt``, deterministic); between them the
customer track plays ``asr_unsure``'s "disagree" recording (an SGD Banks_1 turn, other
writers, CC BY-SA 4.0, that every decode of the default cascade scores under
``reject_logprob`` and no two agree on). ``index.json`` gives the lines and their times.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cxguard.audio.files import read_audio, write_wav_ulaw
from scripts.replay.tts import RATE, Voice, speak

HERE = Path(__file__).resolve().parent
OUT = HERE / "unsure_call"
AGENT = Voice("flite", "slt", 1.0)
GREETING = "Hello, I'm the virtual assistant for Northwind Bank. How can I help you today?"
OFFER = "Is there anything else I can help you with?"
GAP_S = 1.2


def main() -> None:
    index = {r["kind"]: r for r in json.loads((HERE / "asr_unsure" / "index.json").read_text())}
    unsure = read_audio(HERE / "asr_unsure" / index["disagree"]["file"], RATE)
    greeting, offer = speak(GREETING, AGENT), speak(OFFER, AGENT)
    gap = np.zeros(int(GAP_S * RATE), np.int16)
    lead = np.zeros(RATE // 2, np.int16)
    agent = np.concatenate([lead, greeting, gap, np.zeros_like(unsure), gap, offer, gap])
    customer = np.concatenate([lead, np.zeros_like(greeting), gap, unsure, gap])
    customer = np.concatenate([customer, np.zeros(agent.size - customer.size, np.int16)])
    OUT.mkdir(exist_ok=True)
    write_wav_ulaw(OUT / "agent.wav", agent, RATE)
    write_wav_ulaw(OUT / "customer.wav", customer, RATE)
    at = [lead.size, lead.size + greeting.size + gap.size]
    at.append(at[1] + unsure.size + gap.size)
    lines = [
        {"speaker": "agent", "text": GREETING, "start_ms": 1000 * at[0] / RATE},
        {"speaker": "customer", "text": index["disagree"]["text"], "start_ms": 1000 * at[1] / RATE},
        {"speaker": "agent", "text": OFFER, "start_ms": 1000 * at[2] / RATE},
    ]
    (OUT / "index.json").write_text(json.dumps({"lines": lines}, indent=1) + "\n")


if __name__ == "__main__":
    main()
