"""Governance trail costs, each against a naive baseline in the same run (JSON on stdout).

* ``gate``: ``cxguard eval`` of the demo call's two tracks offline (no server) vs the same
  call through a real sidecar (``serve`` + the Twilio simulator, ``--fast``); both with the
  same Whisper model, verdicts compared.
* ``drift``: ``detect_drift`` (grouped SQL counts) on a SQLite ledger of ``--verdicts``
  verdicts vs exporting every row and counting in Python.
* ``report``: the governance trail + HTML of the same ledger, and its PDF through Chromium.

    python benchmarks/governance.py [--verdicts 20000] [--skip-gate]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cxguard.evidence import EvidenceLedger
from cxguard.evidence.drift import DriftOptions, detect_drift
from cxguard.evidence.render import to_html
from cxguard.evidence.trail import governance_trail
from cxguard.model import Outcome, Release, Verdict

NOW = 1_790_000_000.0
DAY = 86_400.0


def gate(tmp: Path) -> dict[str, Any]:
    from cxguard.runtime.demo import demo_audio
    from cxguard.runtime.eval import EvalRequest, run_gate
    from cxguard.runtime.server import running_sidecar
    from cxguard.runtime.services import Services
    from cxguard.runtime.settings import Settings
    from cxguard.runtime.simulate import SimulationOptions, simulate_call

    agent, customer = demo_audio()
    params = {"tenant": "northwind", "authenticated": "false"}
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    run_gate(EvalRequest(pairs=((agent, customer),), parameters=params), rows.append)
    offline_s = time.perf_counter() - started
    live: list[Verdict] = []

    async def serve() -> None:
        settings = Settings(port=0, evidence_url=f"sqlite:///{tmp / 'gate.db'}")
        services = await Services.start(settings)
        services.listeners.append(lambda _i, _t, vs: live.extend(vs))
        try:
            async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
                port = next(iter(server.sockets)).getsockname()[1]
                opts = SimulationOptions(fast=True, parameters=params)
                await simulate_call(f"ws://127.0.0.1:{port}/twilio", agent, customer, opts)
                await side.drain()
        finally:
            await services.close()

    started = time.perf_counter()
    asyncio.run(serve())
    serve_s = time.perf_counter() - started
    same = {(r["turn"], r["assertion"], r["verdict"]) for r in rows} == {
        (v.turn_index, v.assertion_id, v.outcome) for v in live
    }
    return {
        "bench": "gate",
        "offline_s": round(offline_s, 2),
        "serve_simulate_s": round(serve_s, 2),
        "speedup": round(serve_s / offline_s, 2),
        "verdicts": len(rows),
        "same_verdicts": same,
    }


def _fill(url: str, n: int) -> None:
    rng = random.Random(7)
    release = Release("sha256:bench", {"asr": "tiny.en"}, "v1").id
    assertions = [f"a{i}" for i in range(6)]
    intents = ["billing_question", "payment_arrangement", "account_closure", ""]
    batch: list[Verdict] = []
    with EvidenceLedger(url) as led:
        for i in range(n):
            at = NOW - 8 * DAY + 8 * DAY * i / n
            assertion, intent = assertions[i % 6], intents[(i // 6) % 4]
            p_fail = 0.25 if (at > NOW - DAY and assertion == "a1") else 0.05
            outcome: Outcome = "fail" if rng.random() < p_fail else "pass"
            batch.append(
                Verdict(
                    f"C{i // 60}",
                    "acme",
                    (i % 60) // 6,
                    "agent",
                    0.0,
                    1.0,
                    "t",
                    assertion,
                    outcome,
                    "e",
                    decided_at_wall=at,
                    release_id=release,
                    intent=intent,
                )
            )
            if len(batch) >= 6000:
                led.write_verdicts(batch)
                batch = []
        if batch:
            led.write_verdicts(batch)


def drift_and_report(tmp: Path, n: int) -> list[dict[str, Any]]:
    url = f"sqlite:///{tmp / 'drift.db'}"
    started = time.perf_counter()
    _fill(url, n)
    fill_s = time.perf_counter() - started
    out = []
    with EvidenceLedger(url) as led:
        started = time.perf_counter()
        found = detect_drift(led, "acme", now=NOW, options=DriftOptions())
        ours = time.perf_counter() - started
        started = time.perf_counter()
        naive: Counter[tuple[str, str, bool]] = Counter()
        for row in led.export(tenant="acme"):  # every row over the wire, counted in Python
            naive[(row["assertion"], row["intent"], row["decided_at"] >= NOW - DAY)] += 1
        baseline = time.perf_counter() - started
        out.append(
            {
                "bench": "drift",
                "verdicts": n,
                "fill_s": round(fill_s, 2),
                "detect_drift_s": round(ours, 3),
                "export_and_count_s": round(baseline, 3),
                "speedup": round(baseline / ours, 1),
                "findings": [(f.assertion_id, f.intent, f.kind) for f in found],
            }
        )
        started = time.perf_counter()
        page = to_html(governance_trail(led, "acme", until=NOW, allow_open=True))
        trail_s = time.perf_counter() - started
    pdf_s = None
    try:
        from cxguard.runtime.pdf import html_to_pdf

        started = time.perf_counter()
        html_to_pdf(page, tmp / "r.pdf")
        pdf_s = round(time.perf_counter() - started, 2)
    except Exception as exc:  # no browser here: report it, keep the other figures
        print(f"pdf skipped: {exc}", file=sys.stderr)
    out.append(
        {
            "bench": "report",
            "verdicts": n,
            "trail_and_html_s": round(trail_s, 2),
            "html_bytes": len(page),
            "pdf_s": pdf_s,
        }
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--verdicts", type=int, default=20_000)
    parser.add_argument("--skip-gate", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [] if args.skip_gate else [gate(Path(tmp))]
        results += drift_and_report(Path(tmp), args.verdicts)
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
