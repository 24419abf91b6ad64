"""Words spoken → alert for a violation early in a ~27 s agent monologue, at real-time pace,
and the cost of speaker turns for the turn's verdicts of record.

Runs in one process, same audio, one after the other:

* ``speaker_turns`` — the default unit (segments joined into speaker turns), agent speech
  cut into segments of ``--piece-ms`` and each previewed as it ends;
* ``segment_turns`` — baseline: the same pieces, each judged as a turn of its own
  (``turns.end_silence_ms: 0``, what cxguard did before speaker turns);
* ``whole_turn`` — baseline: no pieces (the monologue is cut only by the VAD's 15 s maximum).

The violating sentence ends ``violation_offset_ms`` after the agent turn starts
(tests/data/monologue/dialogue.json); an alert's time is when the runtime hands it to the
sinks. ``speech_end_to_record_ms`` is the end of the agent's speech → the last verdict of
record for its turn(s) (the floor-change/silence wait of speaker turns shows here).

    python benchmarks/midturn.py --json [--out benchmarks/results/turns-midturn.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cxguard.model import CallInfo, TurnText, Verdict  # noqa: E402
from cxguard.runtime.server import running_sidecar  # noqa: E402
from cxguard.runtime.services import Services  # noqa: E402
from cxguard.runtime.settings import Settings, TurnSettings, VadSettings  # noqa: E402
from cxguard.runtime.simulate import SimulationOptions, simulate_call  # noqa: E402

MONOLOGUE = ROOT / "tests" / "data" / "monologue"
ASSERTION = "commitments.no_unauthorized_promises"


async def one_run(name: str, piece_ms: int | None, end_silence_ms: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="cxg-mid-"))
    settings = replace(
        Settings(port=0, evidence_url=f"sqlite:///{tmp / 'ev.db'}"),
        vad=VadSettings(agent_max_turn_ms=piece_ms),
        turns=TurnSettings(end_silence_ms=end_silence_ms),
    )
    alerts: list[float] = []
    records: list[tuple[float, TurnText]] = []

    def on_verdicts(info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        now = time.time()
        alerts.extend(now for v in verdicts if v.assertion_id == ASSERTION and v.outcome == "fail")
        if text is not None and text.speaker == "agent":
            records.append((now, text))

    services = await Services.start(settings)
    services.listeners.append(on_verdicts)
    services.early_listeners.append(on_verdicts)
    try:
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            port = next(iter(server.sockets)).getsockname()[1]
            started = time.time()
            await simulate_call(
                f"ws://127.0.0.1:{port}/twilio",
                MONOLOGUE / "agent.wav",
                MONOLOGUE / "customer.wav",
                SimulationOptions(),
            )
            await side.drain()
    finally:
        await services.close()
    dialogue = json.loads((MONOLOGUE / "dialogue.json").read_text())
    script = json.loads((MONOLOGUE / "turns.json").read_text())["turns"]
    agent = next(t for t in script if t["speaker"] == "agent")
    spoken = started + (agent["start_ms"] + dialogue["violation_offset_ms"]) / 1000
    speech_end = started + agent["end_ms"] / 1000
    first = min(alerts) if alerts else None
    last_record = max((at for at, _ in records), default=None)
    return {
        "run": name,
        "piece_ms": piece_ms,
        "end_silence_ms": end_silence_ms,
        "words_to_alert_ms": round(1000 * (first - spoken), 1) if first else None,
        "alert_before_turn_end_ms": round(1000 * (speech_end - first), 1) if first else None,
        "speech_end_to_record_ms": (
            round(1000 * (last_record - speech_end), 1) if last_record else None
        ),
        "agent_turns_judged": len(records),
        "agent_segments": sum(len(t.segments) for _, t in records),
        "fail_notices": len(alerts),
    }


RUNS = {
    "speaker_turns": lambda piece: (piece, TurnSettings().end_silence_ms),
    "segment_turns": lambda piece: (piece, 0.0),
    "whole_turn": lambda piece: (None, TurnSettings().end_silence_ms),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--piece-ms", type=int, default=4000)
    ap.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=list(RUNS))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    results = []
    for name in args.runs:
        piece, silence = RUNS[name](args.piece_ms)
        res = asyncio.run(one_run(name, piece, silence))
        results.append(res)
        print(json.dumps(res) if args.json else res, flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
