"""Words spoken → alert for a violation early in a ~27 s agent monologue, at real-time pace.

Two runs in one process, same audio: mid-turn evaluation on (agent turns cut into pieces of
``--piece-ms`` and previewed as they end) and off (the whole turn is judged when it ends, the
baseline). The violating sentence ends ``violation_offset_ms`` after the agent turn starts
(tests/data/monologue/dialogue.json); the alert time is when the runtime hands it to the sinks.
The baseline keeps the turn whole (max turn 29 s) so it is judged only when it ends.

    python benchmarks/midturn.py --json
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
from cxguard.runtime.settings import Settings, VadSettings  # noqa: E402
from cxguard.runtime.simulate import SimulationOptions, simulate_call  # noqa: E402

MONOLOGUE = ROOT / "tests" / "data" / "monologue"
ASSERTION = "commitments.no_unauthorized_promises"


async def one_run(piece_ms: int | None) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="cxg-mid-"))
    settings = replace(
        Settings(port=0, evidence_url=f"sqlite:///{tmp / 'ev.db'}"),
        vad=VadSettings(agent_max_turn_ms=piece_ms),
    )
    alerts: list[tuple[float, Verdict]] = []

    def listener(info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        alerts.extend(
            (time.time(), v)
            for v in verdicts
            if v.assertion_id == ASSERTION and v.outcome == "fail"
        )

    services = await Services.start(settings)
    services.listeners.append(listener)
    services.early_listeners.append(listener)
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
    turn_end = started + agent["end_ms"] / 1000
    first = min(alerts, key=lambda a: a[0]) if alerts else None
    return {
        "piece_ms": piece_ms,
        "words_to_alert_ms": round(1000 * (first[0] - spoken), 1) if first else None,
        "alert_before_turn_end_ms": round(1000 * (turn_end - first[0]), 1) if first else None,
        "fail_notices": len(alerts),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--piece-ms", type=int, default=4000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    mid = asyncio.run(one_run(args.piece_ms))
    base = asyncio.run(one_run(None))
    out = {"midturn": mid, "baseline_whole_turn": base}
    print(json.dumps(out) if args.json else out)


if __name__ == "__main__":
    main()
