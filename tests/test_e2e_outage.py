"""Broken parts are loud, never silent: with the ledger failing, violations are still alerted
(saying their evidence is missing); with Redis down, the call is still evaluated and the
failed alert is recorded as evidence."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.model import CallInfo, TurnText, Verdict
from cxguard.runtime.server import running_sidecar
from cxguard.runtime.services import Services
from cxguard.runtime.settings import Settings
from cxguard.runtime.simulate import SimulationOptions, simulate_call

CLOSURE = Path(__file__).parent / "data" / "closure"
REDIS_URL = "redis://127.0.0.1:6379/0"


async def _run(settings: Settings, before: object = None) -> tuple[str, list[Verdict]]:
    seen: list[Verdict] = []

    def listener(info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        seen.extend(verdicts)

    services = await Services.start(settings)
    services.listeners.append(listener)
    try:
        if callable(before):
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
    return result.call_sid, seen


async def test_ledger_failure_still_alerts(tmp_path: Path) -> None:
    tenant = f"out{uuid.uuid4().hex[:8]}"
    db = tmp_path / "ev.db"
    settings = Settings(
        port=0, evidence_url=f"sqlite:///{db}", redis_url=REDIS_URL, default_tenant=tenant
    )

    def break_ledger() -> None:
        with sqlite3.connect(db) as conn:
            conn.execute("DROP TABLE verdicts")

    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        _, seen = await _run(settings, break_ledger)
        entries = await client.xrange(f"cxguard:{tenant}:alerts")
    finally:
        keys = [k async for k in client.scan_iter(f"cxguard:{tenant}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    assert any(v.outcome == "fail" for v in seen)
    alerts = [json.loads(f["data"])["verdict"] for _, f in entries]
    closure = [a for a in alerts if a["assertion_id"] == "billing.closure_escalation"]
    assert any("evidence not stored" in a["evidence"] for a in closure)


async def test_redis_outage_is_recorded_and_evaluation_goes_on(tmp_path: Path) -> None:
    settings = Settings(
        port=0, evidence_url=f"sqlite:///{tmp_path / 'ev.db'}", redis_url="redis://127.0.0.1:1/0"
    )
    call_id, seen = await _run(settings)
    assert any(v.assertion_id == "billing.closure_escalation" and v.outcome == "fail" for v in seen)
    ledger = EvidenceLedger(settings.evidence_url)
    try:
        kinds = [e["kind"] for e in ledger.events(call_id)]
        rows = list(ledger.export(call_id=call_id))
    finally:
        ledger.close()
    assert "alert.failed" in kinds
    assert any(r["verdict"] == "fail" for r in rows)
