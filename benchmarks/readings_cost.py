"""What deciding refused turns on their unsure readings costs: verdicts it gets wrong.

Every customer and agent line of the held-out conversations (``data/heldout/*/*.jsonl``,
written by other people) is spoken by ``--voices`` synthetic voices (chosen by the line's
digest from ``scripts/replay/tts.py``'s 30), each sent through the 8 kHz μ-law channel and
transcribed by the shipped cascade. For a segment the cascade refuses, the policy engine
either decides the turn on its readings (``cxguard.asr.agreement.readings``) or leaves it
``undetermined``. A decided turn is compared with the verdicts of the *words written* in the
same context (a fresh call, caller not authenticated):

* customer line: decided "changes nothing" while the written words set the intent or open an
  obligation (a missed closure request) — ``customer_wrong``;
* agent line: a decided outcome that differs from the written words' outcome for the same
  assertion — ``agent_missed_fails`` (a real violation passed) and ``agent_false_fails``.

    PYTHONPATH=. .venv/bin/python benchmarks/readings_cost.py --json [--voices 2] [--limit N]

Prints one JSON object. Needs espeak-ng and flite.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cxguard.asr import AsrOptions, AsrRejected, Transcriber  # noqa: E402
from cxguard.model import Speaker, TurnText  # noqa: E402
from cxguard.policy.classifier import OnnxTextScorer  # noqa: E402
from cxguard.policy.engine import PolicyEngine  # noqa: E402
from cxguard.policy.pack import default_pack_path, load_pack  # noqa: E402
from cxguard.policy.readings import turn_readings  # noqa: E402
from scripts.replay import tts  # noqa: E402

CONTEXT = {"authenticated": "false"}


def held_out_lines() -> list[tuple[Speaker, str]]:
    seen: dict[tuple[Speaker, str], None] = {}
    for path in sorted((ROOT / "data" / "heldout").glob("*/*.jsonl")):
        for raw in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(raw)
            speaker: Speaker = "agent" if row.get("speaker") == "agent" else "customer"
            if row.get("speaker") in ("agent", "customer") and row.get("text", "").strip():
                seen[(speaker, row["text"].strip())] = None
    return list(seen)


def voices_for(text: str, voices: list[tts.Voice], n: int) -> list[tts.Voice]:
    digest = hashlib.sha1(text.encode()).digest()
    return list(dict.fromkeys(voices[b % len(voices)] for b in digest[:n]))


def outcomes(engine: PolicyEngine, turn: TurnText) -> tuple[dict[str, str], bool]:
    """Each assertion's outcome on ``turn`` in a fresh call, and whether the turn changed the
    conversation (intent set or obligation opened)."""
    conversation = engine.start(CONTEXT)
    results = conversation.evaluate(turn)
    st = conversation.state
    return {r.assertion_id: r.outcome for r in results}, bool(st.pending or st.intent)


def run(limit: int | None, n_voices: int) -> dict[str, Any]:
    engine = PolicyEngine(load_pack(default_pack_path()), OnnxTextScorer())
    transcriber = Transcriber(AsrOptions(device="cpu"))
    voices = tts.voices()
    lines = held_out_lines()[:limit]
    counts: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    spoken = [(s, t, v) for s, t in lines for v in voices_for(t, voices, n_voices)]
    for speaker, text, voice in spoken:
        pcm = tts.speak(text, voice)
        if pcm.size > transcriber.options.max_turn_s * tts.RATE:
            counts["too_long_for_one_segment"] += 1  # the live path would cut it first
            continue
        counts[f"{speaker}_lines"] += 1
        result = transcriber.transcribe_batch([pcm], tts.RATE)[0]
        if not isinstance(result, AsrRejected):
            continue
        counts[f"{speaker}_refused"] += 1
        heard = turn_readings([""], 0, result.readings)  # as a one-segment turn gets them
        if len(heard) >= 2:
            counts[f"{speaker}_refused_with_readings"] += 1
        truth, truth_changes = outcomes(engine, TurnText(0, speaker, text, 0.0, 1000.0))
        unsure = TurnText(0, speaker, "", 0.0, 1000.0, str(result), readings=heard)
        decided, _ = outcomes(engine, unsure)
        if "undetermined" in decided.values():
            continue
        counts[f"{speaker}_decided_on_readings"] += 1
        wrong: list[str] = []
        if speaker == "customer" and truth_changes:
            wrong = ["changes the call"]
        if speaker == "agent":
            for name, outcome in truth.items():
                if outcome == "fail" and decided.get(name) != "fail":
                    counts["agent_missed_fails"] += 1
                    wrong.append(f"missed {name}")
                elif outcome != "fail" and decided.get(name) == "fail":
                    counts["agent_false_fails"] += 1
                    wrong.append(f"false {name}")
        if speaker == "customer" and wrong:
            counts["customer_wrong"] += 1
        if wrong:
            examples.append({"speaker": speaker, "text": text, "voice": voice.label,
                             "readings": heard, "wrong": wrong})  # fmt: skip
    return {
        "lines": len(lines),
        "spoken": len(spoken),
        "counts": dict(sorted(counts.items())),
        "wrong": examples,
        "asr": transcriber.model_id,
        "decodes": list(transcriber.decodes),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    ap.add_argument("--limit", type=int, default=None, help="first N distinct lines only")
    ap.add_argument("--voices", type=int, default=1, help="voices per line (1-20)")
    args = ap.parse_args(argv)
    if not 1 <= args.voices <= 20:
        ap.error("--voices must be 1..20")
    print(json.dumps(run(args.limit, args.voices), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
