"""End to end: real sidecar, real websocket client, real Whisper model, real Redis, real ledger.

The bundled demo call is streamed (fast) as a Twilio both_tracks Media Stream; every scripted
violation must be caught on the right agent turn, alerted on Redis and written as evidence.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support_services import ledger_settings, serving
from websockets.asyncio.client import connect

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.model import Verdict
from cxguard.runtime.demo import demo_audio
from cxguard.runtime.server import Sidecar
from cxguard.runtime.services import Recorder
from cxguard.runtime.simulate import SimulationOptions, simulate_call
from cxguard.simulate import twilio as tm

DEMO = Path(__file__).resolve().parents[1] / "cxguard" / "data" / "demo"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[tuple[Sidecar, str, Recorder, str]]:
    tenant = f"e2e{uuid.uuid4().hex[:8]}"
    settings = ledger_settings(tmp_path, redis_url=REDIS_URL, default_tenant=tenant)
    recorder = Recorder()
    try:
        async with serving(settings, recorder) as (side, host):
            yield side, f"ws://{host}/twilio", recorder, tenant
    finally:
        client = aioredis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(f"cxguard:{tenant}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def _expected() -> list[dict[str, Any]]:
    dialogue = json.loads((DEMO / "dialogue.json").read_text())
    timed = json.loads((DEMO / "turns.json").read_text())
    timed_turns = timed["turns"] if isinstance(timed, dict) else timed
    return [{**d, **t} for d, t in zip(dialogue["turns"], timed_turns, strict=True)]


def _script_turn(verdict: Verdict, script: list[dict[str, Any]]) -> dict[str, Any]:
    """The scripted turn whose timing overlaps the verdict's turn most."""

    def overlap(t: dict[str, Any]) -> float:
        return min(verdict.end_ms, t["end_ms"]) - max(verdict.start_ms, t["start_ms"])

    return max((t for t in script if t["speaker"] == verdict.speaker), key=overlap)


async def test_demo_call_catches_every_scripted_violation(
    sidecar: tuple[Sidecar, str, Recorder, str], tmp_path: Path
) -> None:
    side, url, recorder, tenant = sidecar
    agent, customer = demo_audio()
    result = await simulate_call(
        url,
        agent,
        customer,
        SimulationOptions(fast=True, parameters={"tenant": tenant, "authenticated": "false"}),
    )
    assert result.close_code == 1000
    await side.drain()

    script = _expected()
    agent_script = [t for t in script if t["speaker"] == "agent"]
    agent_turns = [t for t in recorder.turns if t.speaker == "agent"]
    assert len(agent_turns) == len(agent_script)
    assert all(t.undetermined_reason is None for t in recorder.turns)

    fails = {
        (v.assertion_id, _script_turn(v, script)["text"])
        for v in recorder.verdicts
        if v.outcome == "fail"
    }
    wanted = {
        (a, t["text"]) for t in agent_script for a, o in t.get("expect", {}).items() if o == "fail"
    }
    assert fails == wanted
    assert not [v for v in recorder.verdicts if v.outcome == "undetermined"]

    # Every failure is on the tenant's Redis stream, and the closure asked for a handoff.
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        entries = await client.xrange(f"cxguard:{tenant}:alerts")
        handoffs = await client.xrange(f"cxguard:{tenant}:handoffs")
    finally:
        await client.aclose()
    alerted = {json.loads(f["data"])["verdict"]["assertion_id"] for _, f in entries}
    assert alerted == {a for a, _ in wanted}
    assert len(handoffs) == 1

    # The ledger holds every verdict, redacted, with the chain intact.
    ledger = EvidenceLedger(side.services.settings.evidence_url)
    try:
        rows = list(ledger.export(call_id=result.call_sid))
        assert ledger.verify(call_id=result.call_sid).ok
    finally:
        ledger.close()
    assert len(rows) == len(recorder.verdicts)
    assert {r["verdict"] for r in rows} >= {"pass", "fail"}
    assert not any("4111" in (r["text"] or "") for r in rows)
    card = [
        r for r in rows if r["assertion"] == "pii.no_full_card_number" and r["verdict"] == "fail"
    ]
    assert card and "[CARD]" in card[0]["text"]


async def test_malformed_stream_is_closed_and_other_calls_carry_on(
    sidecar: tuple[Sidecar, str, Recorder, str],
) -> None:
    side, url, recorder, tenant = sidecar
    async with connect(url) as bad:
        await bad.send(tm.connected_message())
        await bad.send("{not json")
        await asyncio.wait_for(bad.wait_closed(), 5)
        assert bad.close_code == 1007

    async with connect(url) as early:
        await early.send(tm.media_message("MZ1", "inbound", 1, 0, b"\xff" * 160, 1))
        await asyncio.wait_for(early.wait_closed(), 5)
        assert early.close_code == 1002

    agent, customer = demo_audio()
    result = await simulate_call(
        url, agent, customer, SimulationOptions(fast=True, parameters={"tenant": tenant})
    )
    assert result.close_code == 1000
    await side.drain()
    assert any(v.outcome == "fail" for v in recorder.verdicts)
