"""Build the bundled two-track demo call from ``cxguard/data/demo/dialogue.json``.

    .venv/bin/python scripts/make_demo_call.py            # writes cxguard/data/demo/
    .venv/bin/python scripts/make_demo_call.py --out DIR  # somewhere else (e.g. to compare)

Needs ``espeak-ng`` and ``sox`` on PATH (``apt-get install espeak-ng sox``); the committed files
were made with espeak-ng 1.51 and SoX 14.4.2, and the output is byte-identical run to run.

Each dialogue line is spoken by espeak-ng (agent and customer in different voices, 150 wpm),
converted by sox to 8 kHz 16-bit (no dither, so it is deterministic), trimmed of leading and
trailing silence, and its internal pauses are capped at ``PAUSE_CAP_MS`` (espeak pauses ~390 ms
after a full stop, which is right at the VAD's 400 ms hangover: capping keeps one dialogue line
one VAD turn). Lines follow each other separated by the dialogue's ``gap_ms``; the speaker's
track carries the line and the other track carries digital silence, as in a ``both_tracks``
Twilio stream. Outputs:

- ``agent.wav``, ``customer.wav``: mono 8 kHz G.711 μ-law WAV of equal length, encoded with
  cxguard's audioop-exact codec (sox's μ-law encoder rounds differently);
- ``turns.json``: per line its index, speaker, text, and ``start_ms``/``end_ms`` on the call
  timeline, i.e. where the trimmed speech actually begins and ends.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cxguard.audio.files import write_wav_ulaw

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "cxguard" / "data" / "demo"

RATE = 8000
VOICES = {"agent": "en-us", "customer": "en-us+f3"}
"""Two distinct voices, the most intelligible to Whisper tiny.en (int8, beam 1) after 8 kHz
μ-law among those tried: word error rate over all 18 lines en-us 33 %, en-us+f3 37 %, en-gb
40 %, en-us+m4 44 %, en-us+m3 46 %, en-us+m2 47 %, en-us+f4 49 %."""
WPM = 150
LEVEL_DBFS = -3.0
"""Peak level of every line: telephone-loud, with headroom for μ-law."""
SILENCE_AMPLITUDE = 64
"""|sample| at or below this (-54 dBFS) counts as silence when trimming and capping pauses."""
PAUSE_CAP_MS = 250
LEAD_MS = 500
"""Silence before the first and after the last line."""


def synthesize(text: str, voice: str) -> npt.NDArray[np.int16]:
    """espeak-ng → sox → 8 kHz mono int16, peak-normalised."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(WPM), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    raw = subprocess.run(
        [
            "sox",
            "-D",
            "-R",
            "-t",
            "wav",
            "-",
            "-t",
            "raw",
            "-e",
            "signed",
            "-b",
            "16",
            "-c",
            "1",
            "-r",
            str(RATE),
            "-",
            "rate",
            "-v",
            "gain",
            "-n",
            str(LEVEL_DBFS),
        ],
        input=wav,
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype="<i2").astype(np.int16)


def trim_and_cap(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """Drop leading/trailing silence and shorten internal silences to ``PAUSE_CAP_MS``."""
    loud = np.abs(pcm.astype(np.int32)) > SILENCE_AMPLITUDE
    idx = np.flatnonzero(loud)
    if len(idx) == 0:
        raise ValueError("espeak produced silence")
    pcm, loud = pcm[idx[0] : idx[-1] + 1], loud[idx[0] : idx[-1] + 1]
    cap = PAUSE_CAP_MS * RATE // 1000
    keep = np.ones(len(pcm), dtype=bool)
    # Runs of quiet samples: starts where loud→quiet, ends where quiet→loud.
    edges = np.diff(loud.astype(np.int8))
    starts, ends = np.flatnonzero(edges == -1) + 1, np.flatnonzero(edges == 1) + 1
    for s, e in zip(starts, ends, strict=True):
        if e - s > cap:
            keep[s + cap // 2 : e - cap // 2] = False  # keep both edges of the pause
    return pcm[keep]


def build(
    dialogue: dict[str, Any],
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int16], list[dict[str, Any]]]:
    gap = int(dialogue["gap_ms"]) * RATE // 1000
    lead = LEAD_MS * RATE // 1000
    lines = [
        (t["speaker"], t["text"], trim_and_cap(synthesize(t["text"], VOICES[t["speaker"]])))
        for t in dialogue["turns"]
    ]
    total = 2 * lead + sum(len(p) for _, _, p in lines) + gap * (len(lines) - 1)
    tracks = {"agent": np.zeros(total, np.int16), "customer": np.zeros(total, np.int16)}
    turns: list[dict[str, Any]] = []
    at = lead
    for i, (speaker, text, pcm) in enumerate(lines):
        tracks[speaker][at : at + len(pcm)] = pcm
        turns.append(
            {
                "index": i,
                "speaker": speaker,
                "text": text,
                "start_ms": at * 1000 / RATE,
                "end_ms": (at + len(pcm)) * 1000 / RATE,
            }
        )
        at += len(pcm) + gap
    return tracks["agent"], tracks["customer"], turns


def _version(cmd: list[str]) -> str:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    # Drop the install path (not part of the version) and sox's padding.
    return " ".join(out.split("Data at")[0].split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEMO)
    parser.add_argument("--dialogue", type=Path, default=DEMO / "dialogue.json")
    args = parser.parse_args()
    dialogue = json.loads(args.dialogue.read_text())
    agent, customer, turns = build(dialogue)
    args.out.mkdir(parents=True, exist_ok=True)
    write_wav_ulaw(args.out / "agent.wav", agent, RATE)
    write_wav_ulaw(args.out / "customer.wav", customer, RATE)
    meta = {
        "description": "Where each dialogue line is on the demo call timeline (made by "
        "scripts/make_demo_call.py; times are the trimmed synthesized speech).",
        "sample_rate": RATE,
        "encoding": "PCMU",
        "duration_ms": len(agent) * 1000 / RATE,
        "voices": VOICES,
        "wpm": WPM,
        "pause_cap_ms": PAUSE_CAP_MS,
        "gap_ms": dialogue["gap_ms"],
        "tools": [_version(["espeak-ng", "--version"]), _version(["sox", "--version"])],
        "turns": turns,
    }
    (args.out / "turns.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(turns)} turns, {meta['duration_ms'] / 1000:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
