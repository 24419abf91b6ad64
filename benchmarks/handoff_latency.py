"""End of a violating agent turn → handoff request at the (local) Twilio REST endpoint.

Runs the sidecar in-process with a tenant whose Twilio API base is a local server that records
requests (tests/support_http.py), streams ``--calls`` copies of tests/data/closure at real-time
pace (starts spread over ``--stagger`` s; the agent processes a closure instead of escalating),
and measures, per call, the time from the end of the agent's violating words to the arrival
of ``POST /2010-04-01/Accounts/…/Calls/{CallSid}.json``.

    python benchmarks/handoff_latency.py --calls 10 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support_http import RecordingServer, Reply  # noqa: E402

from cxguard.runtime.server import running_sidecar  # noqa: E402
from cxguard.runtime.services import Services  # noqa: E402
from cxguard.runtime.settings import HandoffSettings, Settings, TenantSettings  # noqa: E402
from cxguard.runtime.simulate import SimulationOptions, simulate_call  # noqa: E402

CLOSURE = ROOT / "tests" / "data" / "closure"
ACCOUNT = "AC" + "2" * 32
TOKEN = "bench-token"


async def run(calls: int, stagger: float) -> dict[str, object]:
    recorder = RecordingServer([Reply(200, body=b"{}")])
    tmp = Path(tempfile.mkdtemp(prefix="cxg-handoff-"))
    settings = Settings(
        port=0,
        evidence_url=f"sqlite:///{tmp / 'ev.db'}",
        tenants=(TenantSettings("bench", twilio_auth_token=TOKEN, twilio_account_sid=ACCOUNT),),
    )
    settings = replace(
        settings, handoff=HandoffSettings(twilio_api_base=recorder.url.split("/hooks")[0])
    )
    script = json.loads((CLOSURE / "turns.json").read_text())["turns"]
    violating = next(t for t in script if t.get("speaker") == "agent" and "close" in t["text"])
    starts: dict[str, float] = {}
    services = await Services.start(settings)
    try:
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            url = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}/twilio"

            async def one(delay: float, n: int) -> None:
                await asyncio.sleep(delay)
                sid = f"CA{n:032x}"
                starts[sid] = time.time()
                await simulate_call(
                    url,
                    CLOSURE / "agent.wav",
                    CLOSURE / "customer.wav",
                    SimulationOptions(auth_token=TOKEN, account_sid=ACCOUNT, call_sid=sid),
                )

            rng = random.Random(3)
            await asyncio.gather(
                *(one(rng.uniform(0, stagger) if n else 0.0, n) for n in range(calls))
            )
            await side.drain()
    finally:
        await services.close()
        recorder.close()
    lat = []
    for r in recorder.received:
        sid = r.path.rsplit("/", 1)[-1].removesuffix(".json")
        if sid in starts:
            lat.append(1000 * (r.at - (starts[sid] + violating["end_ms"] / 1000)))
    lat.sort()
    return {
        "calls": calls,
        "handoffs": len(lat),
        "median_ms": round(statistics.median(lat), 1) if lat else None,
        "max_ms": round(max(lat), 1) if lat else None,
        "note": "from the end of the violating words (script timing) to the request "
        "arriving; includes the VAD hangover (400 ms)",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--stagger", type=float, default=10.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = asyncio.run(run(args.calls, args.stagger))
    print(json.dumps(out) if args.json else out)


if __name__ == "__main__":
    main()
