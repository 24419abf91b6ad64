"""Build a two-track test call whose lines are placed at chosen times: pauses inside a turn,
backchannels under the other speaker's speech.

    .venv/bin/python scripts/make_turns_call.py tests/data/turns/dialogue.json
    .venv/bin/python scripts/make_turns_call.py DIALOGUE --pause-ms 650 --out DIR

Like ``scripts/make_demo_call.py`` (same voices, espeak-ng + sox, deterministic), but each
line says where it starts: ``after_ms`` after the previous line *ended* (negative: it starts
before that line ended, i.e. overlaps it), or ``under_ms`` after the previous line *started*
(speech under it, e.g. a backchannel). ``after_ms`` may be the string ``"pause"``, replaced by
``--pause-ms`` (default: the dialogue's ``pause_ms``). Writes ``agent.wav``, ``customer.wav``
(8 kHz μ-law) and ``turns.json`` (each line's speaker, text, ``start_ms``/``end_ms``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

from cxguard.audio.files import write_wav_ulaw

_SPEC = importlib.util.spec_from_file_location(
    "make_demo_call", Path(__file__).with_name("make_demo_call.py")
)
assert _SPEC is not None and _SPEC.loader is not None
demo = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(demo)

RATE = demo.RATE


def build(
    dialogue: dict[str, Any], pause_ms: float
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    placed: list[tuple[str, str, int, np.ndarray]] = []
    prev_start = prev_end = demo.LEAD_MS * RATE // 1000
    for i, line in enumerate(dialogue["turns"]):
        pcm = demo.trim_and_cap(demo.synthesize(line["text"], demo.VOICES[line["speaker"]]))
        if i == 0:
            start = prev_start
        elif "under_ms" in line:
            start = prev_start + int(line["under_ms"]) * RATE // 1000
        else:
            after = line.get("after_ms", dialogue["gap_ms"])
            after = pause_ms if after == "pause" else float(after)
            start = prev_end + int(after * RATE / 1000)
        placed.append((line["speaker"], line["text"], start, pcm))
        if "under_ms" not in line:  # speech under a line does not move the timeline on
            prev_start, prev_end = start, start + len(pcm)
    total = max(s + len(p) for _, _, s, p in placed) + demo.LEAD_MS * RATE // 1000
    tracks = {"agent": np.zeros(total, np.int16), "customer": np.zeros(total, np.int16)}
    turns = []
    for i, (speaker, text, start, pcm) in enumerate(placed):
        tracks[speaker][start : start + len(pcm)] = pcm
        end = start + len(pcm)
        turns.append(
            {
                "index": i,
                "speaker": speaker,
                "text": text,
                "start_ms": start * 1000 / RATE,
                "end_ms": end * 1000 / RATE,
            }
        )
    return tracks["agent"], tracks["customer"], turns


def write(dialogue_path: Path, out: Path, pause_ms: float | None = None) -> dict[str, Any]:
    dialogue = json.loads(dialogue_path.read_text())
    pause = float(dialogue.get("pause_ms", 800) if pause_ms is None else pause_ms)
    agent, customer, turns = build(dialogue, pause)
    out.mkdir(parents=True, exist_ok=True)
    write_wav_ulaw(out / "agent.wav", agent, RATE)
    write_wav_ulaw(out / "customer.wav", customer, RATE)
    meta = {
        "description": f"Where each line of {dialogue_path.name} is on the call timeline "
        "(made by scripts/make_turns_call.py).",
        "pause_ms": pause,
        "duration_ms": len(agent) * 1000 / RATE,
        "voices": demo.VOICES,
        "wpm": demo.WPM,
        "turns": turns,
    }
    (out / "turns.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dialogue", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="default: the dialogue's folder")
    parser.add_argument("--pause-ms", type=float, default=None)
    args = parser.parse_args()
    meta = write(args.dialogue, args.out or args.dialogue.parent, args.pause_ms)
    print(f"{len(meta['turns'])} lines, {meta['duration_ms'] / 1000:.1f} s")


if __name__ == "__main__":
    main()
