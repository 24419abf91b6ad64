"""PostgreSQL stopped, frozen (SIGSTOP) and with the ledger's role locked out, for
``--outage`` s under ``--calls`` real-time calls.

The sidecar runs in-process with its ledger on a private PostgreSQL cluster (own port and
data directory) and alerts on the shared Redis (a fresh tenant), streaming the bundled demo
call over real websockets. Counted: verdict rows the sidecar decided vs. rows in the ledger
afterwards (lost), and how long after its verdict each alert reached Redis, throughout. A
naive baseline in the same run writes each turn's verdicts once, directly, to a second
database of the same cluster (no spool, no retry), as the sidecar did before.

    python benchmarks/outage_postgres.py --calls 4 --outage 30 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from campaign import Seen, demo_call, drop_keys, stream_entries, summary  # isort: skip
from support_services import PostgresCluster  # isort: skip

from cxguard.errors import EvidenceError
from cxguard.evidence.engine import LedgerOptions
from cxguard.evidence.ledger import EvidenceLedger
from cxguard.model import CallInfo, TurnText, Verdict
from cxguard.runtime.server import running_sidecar
from cxguard.runtime.services import Services
from cxguard.runtime.settings import LedgerSettings, Settings

REDIS = "redis://127.0.0.1:6379/0"


class NaiveWriter:
    """Each turn's verdicts written once, straight to the database; a failure drops them."""

    def __init__(self, url: str) -> None:
        self.ledger = EvidenceLedger(url, LedgerOptions(timeout_s=5.0))
        self.pool = ThreadPoolExecutor(1)
        self.rows = self.lost = 0

    def __call__(self, info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        if verdicts:
            self.rows += len(verdicts)
            self.pool.submit(self._write, list(verdicts))

    def _write(self, verdicts: list[Verdict]) -> None:
        try:
            self.ledger.write_verdicts(verdicts)
        except EvidenceError:
            self.lost += len(verdicts)


async def run_mode(mode: str, calls: int, outage_s: float, at_s: float) -> dict[str, Any]:
    tenant = f"bench{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="cxg-outage-pg-"))
    seen = Seen()
    with PostgresCluster() as pg:
        pg.sql("CREATE DATABASE naive OWNER cxguard")
        naive = NaiveWriter(pg.url.rsplit("/", 1)[0] + "/naive")
        settings = Settings(
            port=0,
            evidence_url=pg.url,
            redis_url=REDIS,
            default_tenant=tenant,
            ledger=LedgerSettings(state_dir=str(tmp / "state")),
        )
        fault, heal = {
            "stop": (pg.stop, pg.start),
            "freeze": (pg.freeze, pg.thaw),
            "revoke": (pg.revoke, pg.restore),
        }[mode]
        services = await Services.start(settings)
        services.listeners += [seen, naive]
        services.early_listeners.append(seen.on_early)
        window: dict[str, float] = {}
        try:
            async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
                url = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}/twilio"
                streams = [
                    asyncio.create_task(demo_call(url, 0.3 * i, False)) for i in range(calls)
                ]
                await asyncio.sleep(at_s)
                window["start"] = time.time()
                fault()
                await asyncio.sleep(outage_s)
                spooled_at_heal = services.evidence.depth()
                heal()
                window["end"] = time.time()
                while services.evidence.depth() and time.time() - window["end"] < 120:
                    await asyncio.sleep(0.1)
                window["drained"] = time.time()
                await asyncio.gather(*streams)
                await side.drain()
        finally:
            await services.close()
            naive.pool.shutdown(wait=True)
            naive.ledger.close()
        with EvidenceLedger(pg.url, LedgerOptions(read_only=True)) as ledger:
            stored = [
                (r["call_id"], r["turn"], r["assertion"]) for r in ledger.export(tenant=tenant)
            ]
            report = ledger.verify(tenant=tenant)
    entries = await stream_entries(REDIS, f"cxguard:{tenant}:alerts")
    await drop_keys(REDIS, f"cxguard:{tenant}:*")
    decided = [(v.call_id, v.turn_index, v.assertion_id) for v in seen.verdicts]
    decided_at = {
        (v.call_id, v.turn_index, v.assertion_id, v.outcome): v.decided_at_wall
        for v in seen.verdicts + seen.early
    }
    lags, lags_during, pending_said = [], [], 0
    for at, fields in entries:
        v = json.loads(fields["data"])["verdict"]
        lag = at - decided_at.get(
            (v["call_id"], v["turn_index"], v["assertion_id"], v["outcome"]), v["decided_at_wall"]
        )
        lags.append(lag)
        if window["start"] <= v["decided_at_wall"] <= window["end"]:
            lags_during.append(lag)
        pending_said += "evidence pending" in v["evidence"]
    return {
        "benchmark": "outage_postgres",
        "mode": mode,
        "calls": calls,
        "outage_s": outage_s,
        "outage_at_s": at_s,
        "turns": len(seen.turns),
        "owed_rows": len(decided),
        "stored_rows": len(stored),
        "lost_rows": len(set(decided) - set(stored)),
        "duplicated_rows": len(stored) - len(set(stored)),
        "verify_ok": report.ok,
        "spooled_at_heal": spooled_at_heal,
        "drain_after_heal_s": round(window["drained"] - window["end"], 2),
        "alerts": len(entries),
        "alerts_saying_pending": pending_said,
        "alert_lag_s": summary(lags),
        "alert_lag_during_outage_s": summary(lags_during),
        "naive_baseline": {"rows": naive.rows, "lost_rows": naive.lost},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--outage", type=float, default=30.0)
    ap.add_argument("--at", type=float, default=20.0, help="Seconds into the calls.")
    ap.add_argument("--mode", choices=["stop", "freeze", "revoke", "all"], default="all")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    modes = ["stop", "freeze", "revoke"] if args.mode == "all" else [args.mode]
    for mode in modes:
        out = asyncio.run(run_mode(mode, args.calls, args.outage, args.at))
        print(json.dumps(out) if args.json else out, flush=True)


if __name__ == "__main__":
    main()
