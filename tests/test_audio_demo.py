"""The bundled demo call (made by scripts/make_demo_call.py) is what turns.json says it is."""

from __future__ import annotations

import itertools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cxguard.audio.codec import ULAW_SILENCE, ulaw_decode
from cxguard.audio.files import read_audio, read_wav_ulaw

DEMO = Path(str(resources.files("cxguard") / "data" / "demo"))
LOUD = 48  # the generator trims at |x| <= 64; μ-law quantisation may move that by a step


def _meta() -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((DEMO / "turns.json").read_text())
    return meta


def _tracks() -> dict[str, bytes]:
    out = {}
    for speaker in ("agent", "customer"):
        raw, rate = read_wav_ulaw(DEMO / f"{speaker}.wav")
        assert rate == 8000
        out[speaker] = raw
    return out


def test_turns_follow_the_dialogue_in_order() -> None:
    dialogue = json.loads((DEMO / "dialogue.json").read_text())
    turns = _meta()["turns"]
    assert [(t["index"], t["speaker"], t["text"]) for t in turns] == [
        (i, d["speaker"], d["text"]) for i, d in enumerate(dialogue["turns"])
    ]
    for a, b in itertools.pairwise(turns):
        assert a["start_ms"] < a["end_ms"]
        assert b["start_ms"] - a["end_ms"] == pytest.approx(dialogue["gap_ms"])


def test_tracks_are_equal_length_8k_ulaw_and_match_the_timeline() -> None:
    tracks = _tracks()
    meta = _meta()
    assert len(tracks["agent"]) == len(tracks["customer"])
    assert len(tracks["agent"]) / 8 == meta["duration_ms"]


@pytest.mark.parametrize("speaker", ["agent", "customer"])
def test_each_track_carries_only_its_speaker_between_exact_boundaries(speaker: str) -> None:
    raw = _tracks()[speaker]
    pcm = ulaw_decode(raw)
    silent = np.ones(len(raw), dtype=bool)
    for turn in _meta()["turns"]:
        lo, hi = round(turn["start_ms"] * 8), round(turn["end_ms"] * 8)
        if turn["speaker"] == speaker:
            silent[lo:hi] = False
            # Trimmed speech: the first and last samples are already audible.
            assert abs(int(pcm[lo])) > LOUD and abs(int(pcm[hi - 1])) > LOUD
            assert np.sqrt(np.mean(pcm[lo:hi].astype(np.float64) ** 2)) > 1000
    # Everywhere else: digital silence, the other party's turns included.
    assert set(np.frombuffer(raw, np.uint8)[silent].tolist()) == {ULAW_SILENCE}


def test_the_files_decode_the_same_through_ffmpeg() -> None:
    for speaker, raw in _tracks().items():
        assert np.array_equal(read_audio(DEMO / f"{speaker}.wav", 8000), ulaw_decode(raw))
