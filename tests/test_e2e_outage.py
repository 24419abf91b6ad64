"""Broken parts delay, never lose, and are never silent: with the ledger failing, violations
are still alerted at once (saying their evidence is pending) and every verdict is stored
once the ledger works again; with Redis unreachable, the call is still evaluated, the alert
waits in the outbox and its retrying state is evidence."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

import redis.asyncio as aioredis

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.model import CallInfo, TurnText, Verdict
from cxguard.runtime.server import running_sidecar
from cxguard.runtime.services import Services
from cxguard.runtime.settings import LedgerSettings, Settings
from cxguard.runtime.simulate import SimulationOptions, simulate_call
from cxguard.sinks.outbox import OutboxStore

CLOSURE = Path(__file__).parent / "data" / "closure"
REDIS_URL = "redis://127.0.0.1:6379/0"


async def _run(
    settings: Settings, before: Callable[[], None] | None = None
) -> tuple[str, list[Verdict], list[TurnText]]:
    seen: list[Verdict] = []
    turns: list[TurnText] = []

    def listener(info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        seen.extend(verdicts)
        if text is not None:
            turns.append(text)

    services = await Services.start(settings)
    services.listeners.append(listener)
    try:
        if before is not None:
            before()
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            port = next(iter(server.sockets)).getsockname()[1]
            result = await simulate_call(
                f"ws://127.0.0.1:{port}/twilio",
                CLOSURE / "agent.wav",
                CLOSURE / "customer.wav",
                SimulationOptions(fast=True),
            )
            await side.drain()
    finally:
        await services.close()
    return result.call_sid, seen, turns


async def test_ledger_failure_alerts_pending_evidence_and_loses_no_row(tmp_path: Path) -> None:
    tenant = f"out{uuid.uuid4().hex[:8]}"
    db = tmp_path / "ev.db"
    settings = Settings(
        port=0,
        evidence_url=f"sqlite:///{db}",
        redis_url=REDIS_URL,
        default_tenant=tenant,
        ledger=LedgerSettings(timeout_s=1.0),
    )

    def break_ledger() -> None:
        with sqlite3.connect(db) as conn:
            conn.execute("DROP TABLE verdicts")

    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        call_id, seen, turns = await _run(settings, break_ledger)
        entries = await client.xrange(f"cxguard:{tenant}:alerts")
    finally:
        keys = [k async for k in client.scan_iter(f"cxguard:{tenant}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    assert any(v.outcome == "fail" for v in seen)
    alerts = [json.loads(f["data"])["verdict"] for _, f in entries]
    closure = [a for a in alerts if a["assertion_id"] == "billing.closure_escalation"]
    assert closure and any("evidence pending" in a["evidence"] for a in closure)
    assert not [a for a in closure if "127.0.0.1" in a["evidence"] or str(db) in a["evidence"]]

    # The verdicts waited in the spool; the next start (which repairs the schema) stores them.
    services = await Services.start(settings)
    await services.close()
    with EvidenceLedger(settings.evidence_url) as ledger:
        rows = list(ledger.export(call_id=call_id))
        report = ledger.verify(call_id=call_id)
    assert len(rows) == len(seen)
    assert {t.index for t in turns if t.speaker == "agent"} <= {r["turn"] for r in rows}
    assert report.ok, str(report)


async def test_redis_outage_waits_in_the_outbox_and_evaluation_goes_on(tmp_path: Path) -> None:
    settings = Settings(
        port=0, evidence_url=f"sqlite:///{tmp_path / 'ev.db'}", redis_url="redis://127.0.0.1:1/0"
    )
    call_id, seen, _ = await _run(settings)
    assert any(v.assertion_id == "billing.closure_escalation" and v.outcome == "fail" for v in seen)
    with EvidenceLedger(settings.evidence_url) as ledger:
        events = ledger.events(call_id)
        rows = list(ledger.export(call_id=call_id))
    retrying = [e for e in events if e["kind"] == "alert.retrying"]
    assert retrying and retrying[0]["data"]["sink"] == "redis"
    assert "127.0.0.1" not in json.dumps(retrying[0]["data"])  # summarised, not copied
    assert any(r["verdict"] == "fail" for r in rows)
    store = OutboxStore(tmp_path / "ev.db.state" / "outbox.db")
    try:
        assert store.counts()["redis"]["pending"] >= 1  # kept for the next start
    finally:
        store.close()
