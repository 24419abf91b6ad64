"""scripts/replay/render.py: two-track calls from timed and untimed dialogues.

The speech synthesiser is passed in; here it is a tone whose length follows the text, so the
timing rules are checked exactly (the real espeak-ng/flite path runs in benchmarks/).
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from cxguard.audio.files import read_wav_ulaw
from scripts.replay.render import (
    Call,
    Line,
    Timing,
    harper_valley,
    render,
    render_untimed,
    sgd_dialogues,
    speakable,
)
from scripts.replay.tts import RATE, Voice

HV = Path(__file__).resolve().parents[1] / "scripts" / "replay" / "harper_valley"


def tone(text: str, voice: Voice) -> npt.NDArray[np.int16]:
    """60 ms per character at the voice's rate, loud enough to be speech."""
    n = int(0.06 * len(text) / voice.rate * RATE)
    t = np.arange(n) / RATE
    return (8000 * np.sin(2 * np.pi * 200 * t)).astype(np.int16)


def test_speakable_drops_tags_and_reads_amounts() -> None:
    assert speakable("[noise] okay <unk> bye") == "okay bye"
    assert speakable("You have $1,630.") == "You have one thousand six hundred and thirty dollars."
    assert speakable("Send $980 bucks") == "Send nine hundred and eighty bucks"
    assert "seventy-seven cents" in speakable("It is $5,118.77 now")
    assert speakable("send 520 bucks") == "send five hundred and twenty bucks"


def test_harper_valley_ids_held_out_for_evaluation_are_refused(tmp_path: Path) -> None:
    held_out = tmp_path / "0a1b2c3d4e5f6a7b.json"
    held_out.write_text("[]")
    with pytest.raises(ValueError, match="held out"):
        harper_valley(held_out)
    lines = harper_valley(HV / "ff0296d00e5e4184.json")
    assert [ln.start_ms for ln in lines] == sorted(ln.start_ms or 0 for ln in lines)
    assert {ln.speaker for ln in lines} == {"agent", "customer"}


def test_timed_lines_keep_their_start_times(tmp_path: Path) -> None:
    lines = [
        Line("agent", "hello this is the bank", 500.0, 1500.0),
        Line("agent", "[noise]", 2100.0, 100.0),
        Line("customer", "hi", 2500.0, 300.0),
        Line("agent", "a line far longer than the time it had in the call", 3000.0, 800.0),
        Line("agent", "and one that starts too early", 3200.0, 2000.0),
    ]
    out = render("hv", "x1", lines, tmp_path, 0, synth=tone)
    manifest = json.loads((out / "call.json").read_text())
    pieces = manifest["pieces"]
    assert manifest["timed"] and len(pieces) == 4  # the tag-only line is not spoken
    assert [p["start_ms"] for p in pieces[:3]] == [500.0, 2500.0, 3000.0]
    assert pieces[2]["voice"] != manifest["voices"]["agent"]  # overran: spoken faster
    late = pieces[3]
    assert late["start_ms"] >= pieces[2]["end_ms"] + 150 - 0.2
    assert late["shifted_ms"] > 0
    agent, rate = read_wav_ulaw(out / "agent.wav")
    customer, _ = read_wav_ulaw(out / "customer.wav")
    assert rate == RATE and len(agent) == len(customer)
    assert len(agent) / RATE * 1000 >= late["end_ms"]


def test_untimed_dialogues_get_gaps_pauses_and_backchannels() -> None:
    lines = [
        Line("customer", "I want to check my balance. It is for my savings account."),
        Line("agent", "Sure. One moment please. Your savings account has $1,200. Anything else?"),
        Line("customer", "No thanks."),
    ] * 6
    timing = Timing(pause_prob=0.5, backchannel_prob=0.5)
    call = Call("t", "c", {})
    voices = {"agent": Voice("espeak-ng", "en-us"), "customer": Voice("flite", "slt")}
    render_untimed(lines, voices, call, timing, random.Random(3), tone)
    spoken = [p for p in call.pieces if p.kind == "line"]
    backchannels = [p for p in call.pieces if p.kind == "backchannel"]
    gaps, pauses = [], []
    for prev, nxt in itertools.pairwise(spoken):
        (pauses if prev.line == nxt.line else gaps).append((nxt.start_ms - prev.end_ms) / 1000)
    assert gaps and all(0.3 - 1e-3 <= g <= 1.2 + 1e-3 for g in gaps)
    assert pauses and all(0.5 - 1e-3 <= p <= 0.9 + 1e-3 for p in pauses)
    assert backchannels
    for b in backchannels:
        under = next(p for p in spoken if p.line == b.line)
        assert b.speaker != under.speaker  # the listener, under the speaker's turn
    assert all(p.script and "$" not in p.text for p in spoken if "1,200" in p.script)


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    _, lines = sgd_dialogues(limit=1)[0]
    a = render("sgd", "d", lines, tmp_path / "a", 3, seed=1, synth=tone)
    b = render("sgd", "d", lines, tmp_path / "b", 3, seed=1, synth=tone)
    assert (a / "call.json").read_text() == (b / "call.json").read_text()
    assert (a / "agent.wav").read_bytes() == (b / "agent.wav").read_bytes()
    manifest = json.loads((a / "call.json").read_text())
    engines = {v.split(":")[0] for v in manifest["voices"].values()}
    assert engines == {"espeak-ng", "flite"}
