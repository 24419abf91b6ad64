"""The ASR worker with the real model: a turn that passes is not held by another's fallbacks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from cxguard.asr import AsrOptions, Transcriber
from cxguard.audio.codec import ulaw_decode, ulaw_encode
from cxguard.audio.files import read_audio
from cxguard.audio.vad import VadSegmenter
from cxguard.model import Segment
from cxguard.runtime.asr_worker import AsrWorker

DEMO = Path(__file__).resolve().parents[1] / "cxguard" / "data" / "demo"


def _agent_segments() -> dict[str, Segment]:
    pcm = ulaw_decode(ulaw_encode(read_audio(DEMO / "agent.wav", 8000)))
    seg = VadSegmenter("agent")
    cut = seg.feed(pcm, 0.0) + seg.flush()
    script = json.loads((DEMO / "turns.json").read_text())["turns"]
    return {
        line["text"]: min(cut, key=lambda t: abs(t.start_ms - line["start_ms"]))
        for line in script
        if line["speaker"] == "agent"
    }


async def test_a_fast_turn_leaves_the_batch_before_a_looping_one() -> None:
    asr = Transcriber(AsrOptions(device="cpu", fallback_model=None))
    turns = _agent_segments()
    card = next(s for t, s in turns.items() if "card number" in t)
    fine = next(s for t, s in turns.items() if "verified your identity" in t)
    worker = AsrWorker(asr.transcribe_batch, batch_size=2)
    try:
        slow, fast = worker.submit(card), worker.submit(fine)
        finished: list[str] = []
        slow.add_done_callback(lambda _: finished.append("card"))
        fast.add_done_callback(lambda _: finished.append("fine"))
        results = await asyncio.wait_for(asyncio.gather(slow, fast), 120)
    finally:
        await worker.close()
    assert finished == ["fine", "card"]
    assert results[1].decode == "turn-b1" and results[0].decode != "turn-b1"
