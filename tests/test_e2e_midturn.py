"""Mid-turn evaluation: a violation early in a long agent monologue is alerted while the agent
is still speaking — from a piece of the turn, long before the turn ends — once, and the whole
turn still gets its full set of verdicts when it ends."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path

import redis.asyncio as aioredis

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.model import CallInfo, TurnText, Verdict
from cxguard.runtime.server import running_sidecar
from cxguard.runtime.services import Services
from cxguard.runtime.settings import Settings, VadSettings
from cxguard.runtime.simulate import SimulationOptions, simulate_call

MONOLOGUE = Path(__file__).parent / "data" / "monologue"
REDIS_URL = "redis://127.0.0.1:6379/0"


async def test_violation_is_alerted_before_the_monologue_ends(tmp_path: Path) -> None:
    tenant = f"mid{uuid.uuid4().hex[:8]}"
    settings = replace(
        Settings(
            port=0,
            evidence_url=f"sqlite:///{tmp_path / 'ev.db'}",
            redis_url=REDIS_URL,
            default_tenant=tenant,
        ),
        vad=VadSettings(agent_max_turn_ms=4000),
    )
    early: list[Verdict] = []
    final: list[tuple[TurnText | None, list[Verdict]]] = []

    def on_early(info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        early.extend(verdicts)

    def on_final(info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        final.append((text, verdicts))

    services = await Services.start(settings)
    services.early_listeners.append(on_early)
    services.listeners.append(on_final)
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            port = next(iter(server.sockets)).getsockname()[1]
            result = await simulate_call(
                f"ws://127.0.0.1:{port}/twilio",
                MONOLOGUE / "agent.wav",
                MONOLOGUE / "customer.wav",
                SimulationOptions(fast=True),
            )
            await side.drain()
        entries = await client.xrange(f"cxguard:{tenant}:alerts")
    finally:
        await services.close()
        keys = [k async for k in client.scan_iter(f"cxguard:{tenant}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    script = json.loads((MONOLOGUE / "turns.json").read_text())["turns"]
    monologue = next(t for t in script if t["speaker"] == "agent")
    assert monologue["end_ms"] - monologue["start_ms"] > 20_000

    # Alerted from a piece that ended long before the turn did.
    promise = [v for v in early if v.assertion_id == "commitments.no_unauthorized_promises"]
    assert len(promise) == 1
    assert promise[0].end_ms < monologue["start_ms"] + 8_000
    assert promise[0].end_ms < monologue["end_ms"] - 15_000

    # The whole turn is judged once at its end, with all its words, and fails the same way.
    agent_turns = [(t, vs) for t, vs in final if t is not None and t.speaker == "agent"]
    assert len(agent_turns) == 1
    text, verdicts = agent_turns[0]
    assert "guarantee" in text.text.lower() and "statement" in text.text.lower()
    assert abs(text.start_ms - monologue["start_ms"]) < 100
    outcome = {v.assertion_id: v.outcome for v in verdicts}
    assert outcome["commitments.no_unauthorized_promises"] == "fail"

    # One alert for it on Redis (the mid-turn one), not two.
    alerted = [json.loads(f["data"])["verdict"]["assertion_id"] for _, f in entries]
    assert alerted.count("commitments.no_unauthorized_promises") == 1

    ledger = EvidenceLedger(settings.evidence_url)
    try:
        kinds = [e["kind"] for e in ledger.events(result.call_sid)]
    finally:
        ledger.close()
    assert "alert.early" in kinds
