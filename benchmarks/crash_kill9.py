"""kill -9 of ``cxguard serve`` with a backlog of closed turns, then restart and reconnect.

The kill comes once the server has read every stream to its end (its ``stream_ended`` is
spooled), so every turn of every call is closed and most are not judged yet.

Starts ``cxguard serve`` (SQLite ledger, alerts on the shared Redis under a fresh tenant),
streams ``--calls`` copies of the bundled demo call as fast as the socket takes them (so
their turns close long before ASR can judge them), kills the process with SIGKILL once every
stream has ended, restarts it, waits for the recovery to finish, reconnects one of the calls
with the same call id, stops the server and checks the ledger. The number of turns each call
closed is the number of speaker turns of a reference copy of the call that the same server
judged to its end before the crash scenario.

    python benchmarks/crash_kill9.py --calls 4 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from campaign import ROOT, demo_call, drop_keys  # isort: skip
from support_services import free_port  # isort: skip

from cxguard.evidence.engine import LedgerOptions
from cxguard.evidence.ledger import EvidenceLedger
from cxguard.evidence.spool import Spool

REDIS = "redis://127.0.0.1:6379/0"


def calls_ended(db: Path) -> set[str]:
    if not db.exists():
        return set()
    with EvidenceLedger(str(db), LedgerOptions(read_only=True)) as ledger:
        return {e["call_id"] for e in ledger.events(kind="call_ended")}


async def reference_turns(url: str, db: Path) -> int:
    """Speaker turns of one demo call judged to its end by the same server, uncrashed: the
    count every crashed call must reach (turns depend on what ASR heard, e.g. backchannels)."""
    sid = await demo_call(url, 0.0, True)
    deadline = time.monotonic() + 600
    while sid not in await asyncio.to_thread(calls_ended, db):
        assert time.monotonic() < deadline, "the reference call was not judged"
        await asyncio.sleep(0.5)
    return len(counts(db)[sid]["turns"])


def serve(config: Path) -> subprocess.Popen[bytes]:
    with open(config.with_suffix(".log"), "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cxguard.cli", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=ROOT,
        )


def health(port: int, timeout_s: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                answer: dict[str, Any] = json.loads(r.read())
                return answer
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def streams_ended(db: Path) -> set[str]:
    """Calls whose ``stream_ended`` the server recorded (spooled or in the ledger): it has read
    all of their audio, so every turn of theirs is closed."""
    spool_path = db.with_name(db.name + ".state") / "spool.db"
    found: set[str] = set()
    if spool_path.exists():
        spool = Spool(spool_path, read_only=True)
        try:
            for _, op in spool.peek(1_000_000):
                if op.table == "events" and op.rows[0]["kind"] == "stream_ended":
                    found.add(op.call_id)
        finally:
            spool.close()
    if db.exists():
        with EvidenceLedger(str(db), LedgerOptions(read_only=True)) as ledger:
            found |= {e["call_id"] for e in ledger.events(kind="stream_ended")}
    return found


def counts(db: Path) -> dict[str, dict[str, Any]]:
    with EvidenceLedger(str(db), LedgerOptions(read_only=True)) as ledger:
        out = {}
        for call in ledger.calls():
            sid = call["call_id"]
            turns = [t["turn"] for t in ledger.turns(sid)]
            judged = {r["turn"] for r in ledger.export(call_id=sid)}
            agents = {t["turn"] for t in ledger.turns(sid) if t["speaker"] == "agent"}
            gaps = [i for e in ledger.events(sid, kind="gap") for i in e["data"].get("turns", [])]
            out[sid] = {
                "turns": turns,
                "agent_turns": agents,
                "agent_turns_judged": agents & judged,
                "gaps": gaps,
            }
        return out


async def run(calls: int) -> dict[str, Any]:
    tenant = f"bench{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="cxg-kill9-"))
    db, config, port = tmp / "ev.db", tmp / "serve.yaml", free_port()
    config.write_text(
        f"host: 127.0.0.1\nport: {port}\nevidence_url: sqlite:///{db}\nredis_url: {REDIS}\n"
        f"default_tenant: {tenant}\nasr:\n  max_wait_ms: 600000\n  queue_size: 1024\n"
    )
    url = f"ws://127.0.0.1:{port}/twilio"
    proc = serve(config)
    try:
        await asyncio.to_thread(health, port)
        expected = await reference_turns(url, db)
        sids = await asyncio.gather(*(demo_call(url, 0.0, True) for _ in range(calls)))
        deadline = time.monotonic() + 120  # the server may still be reading the sockets
        while not set(sids) <= await asyncio.to_thread(streams_ended, db):
            assert time.monotonic() < deadline, "the server did not read the streams"
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        before = counts(db)
        started = time.monotonic()
        proc = serve(config)
        await asyncio.to_thread(health, port)
        while (await asyncio.to_thread(health, port))["recovering"]:
            await asyncio.sleep(0.5)
        recovery_s = time.monotonic() - started
        await demo_call(url, 0.0, True, call_sid=sids[0])  # a reconnect after the restart
        await asyncio.sleep(3.0)  # let the server read what the socket holds before SIGTERM
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(300)
    after = counts(db)
    verify = subprocess.run(
        [sys.executable, "-m", "cxguard.cli", "evidence", "verify", "--evidence", f"sqlite:///{db}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    report = json.loads(verify.stdout)
    await drop_keys(REDIS, f"cxguard:{tenant}:*")
    closed = expected * calls
    judged_before = sum(len(before.get(s, {}).get("turns", [])) for s in sids)
    per_call = [after[s] for s in sids]
    first = per_call[0]["turns"]

    def before_kill(indices: Any) -> set[int]:  # the reconnect adds turns to the first call
        return {i for i in indices if i < expected}

    return {
        "benchmark": "crash_kill9",
        "calls": calls,
        "turns_closed_before_kill": closed,
        "turns_stored_before_kill": judged_before,
        "after_restart": {
            "turns_stored": sum(len(before_kill(c["turns"])) for c in per_call),
            "turns_in_gaps": sum(len(before_kill(c["gaps"])) for c in per_call),
            "agent_turns": sum(len(before_kill(c["agent_turns"])) for c in per_call),
            "agent_turns_with_verdicts": sum(
                len(before_kill(c["agent_turns_judged"])) for c in per_call
            ),
            "duplicate_turn_indices": sum(len(c["turns"]) - len(set(c["turns"])) for c in per_call),
            "recovery_s": round(recovery_s, 1),
        },
        "reconnect": {
            "turns_before": expected,
            "turns_after": len(first),
            "indices_contiguous": sorted(first) == list(range(len(first))),
        },
        "verify": {
            "exit": verify.returncode,
            "ok": report["ok"],
            "interrupted_named": len(report["interrupted"]),
            "problems": [p["message"] for p in report["problems"]][:10],
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = asyncio.run(run(args.calls))
    print(json.dumps(out) if args.json else out, flush=True)


if __name__ == "__main__":
    main()
