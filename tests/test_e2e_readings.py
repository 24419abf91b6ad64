"""A customer turn ASR refuses, through the real sidecar: its unsure readings decide it.

The call of ``tests/data/unsure_call`` (``make_unsure_call.py``) streams as a Twilio Media
Stream: a greeting, a customer turn every decode of tiny.en is unsure of and no two agree on,
an offer of more help. The customer turn is recorded as unread (its reason kept) but, since
no reading of it asks for closure or sets the intent, the closure verdict is decided, and
nothing but the greeting's expected verdicts is alerted."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import redis.asyncio as aioredis
from support_services import ByCall, ledger_settings, serving

from cxguard.runtime.settings import AsrSettings
from cxguard.runtime.simulate import SimulationOptions, simulate_call

CALL = Path(__file__).parent / "data" / "unsure_call"
REDIS_URL = "redis://127.0.0.1:6379/0"
CLOSURE = "billing.closure_escalation"


async def test_an_unsure_customer_turn_is_decided_on_its_readings(tmp_path: Path) -> None:
    tenant = f"unsure{uuid.uuid4().hex[:8]}"
    # The base model is not part of the default cascade; keep it out where it is installed.
    settings = ledger_settings(
        tmp_path,
        redis_url=REDIS_URL,
        default_tenant=tenant,
        asr=replace(AsrSettings(), fallback_model=None),
    )
    heard = ByCall()
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        async with serving(settings, heard) as (side, address):
            await simulate_call(
                f"ws://{address}/twilio",
                CALL / "agent.wav",
                CALL / "customer.wav",
                SimulationOptions(fast=True),
            )
            await side.drain()
        alerts = await client.xrange(f"cxguard:{tenant}:alerts")
    finally:
        keys = [k async for k in client.scan_iter(f"cxguard:{tenant}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    (call_id,) = heard.turns
    turns, verdicts = heard.turns[call_id], heard.verdicts[call_id]
    customer = [t for t in turns if t.speaker == "customer"]
    assert len(customer) == 1, [t.text for t in turns]
    turn = customer[0]
    assert turn.undetermined_reason is not None and "low_logprob" in turn.undetermined_reason
    assert turn.text == ""
    on_turn = {v.assertion_id: v for v in verdicts if v.turn_index == turn.index}
    closure = on_turn[CLOSURE]
    assert closure.outcome == "not_applicable", closure.evidence
    assert "unsure readings" in closure.evidence
    assert not [v for v in verdicts if v.outcome == "undetermined"]
    assert all(fields.get("kind") != "undetermined" for _, fields in alerts), alerts
